"""The analyses' charts and exports, drawn after the analyses' SQL is built."""
