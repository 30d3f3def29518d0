"""GlobalPlatform card manager (GP Card Spec 2.3 and Amendment D)."""
