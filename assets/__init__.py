"""What ships with the toolkit: the bundled demo model (``demo/``) and its evaluation. Installed as ``eg3d_assets``."""
