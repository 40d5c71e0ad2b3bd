# JupyterLab server settings for the workbench. The token comes from JUPYTER_TOKEN_FILE.
c = get_config()  # noqa: F821 - provided by Jupyter when it loads this file
c.ServerApp.ip = "0.0.0.0"
c.ServerApp.port = 8888
c.ServerApp.open_browser = False
c.ServerApp.root_dir = "/home/jovyan/work"
# The token is required; no password login, no token-less access.
c.ServerApp.allow_remote_access = True
# Nothing reaches the internet on its own: the server fetches no news feed and checks for no
# JupyterLab update, even when a user switches "Fetch official Jupyter news" on (the settings
# that keep JupyterLab from asking about either are in overrides.json).
c.LabApp.news_url = None
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"
