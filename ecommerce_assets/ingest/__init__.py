"""Raw ingestion: the export files found, validated and loaded into schema `raw`."""
