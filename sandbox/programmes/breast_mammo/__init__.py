"""Breast cancer screening with mammography: women, breast density, DCIS and invasive cancer."""
