"""Raw data to a clean, versioned dataset: sheets, photos, the merge and its manifest."""
