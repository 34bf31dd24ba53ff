"""Reading the user's data: the catalog CSV, its filters, numbers in text, images of any format, object regions."""
