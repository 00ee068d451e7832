"""Lung cancer screening with low-dose CT (NLST, Lung-RADS v2022)."""
