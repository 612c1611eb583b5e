"""Generated signals committed with the repository (parquet), so later work need not regenerate them."""
