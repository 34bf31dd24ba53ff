"""Reading the user's data: the catalog CSV, its filters, numbers in text, and images of any format."""
