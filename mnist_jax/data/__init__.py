"""Host-side data sources and device-side preprocessing (augmentation, corruptions)."""
