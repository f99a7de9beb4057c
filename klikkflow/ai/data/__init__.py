"""Vendored data files of the AI kernel (see NOTICE.txt for origin and licence)."""
