"""Images: classifier, morphological types, labels into targets."""
