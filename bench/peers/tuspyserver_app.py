"""tuspyserver (a FastAPI router) in the smallest app, served by uvicorn: the
Python peer of bench/compare.   python tuspyserver_app.py PORT DIRECTORY"""

import sys

import uvicorn
from fastapi import FastAPI
from tuspyserver import create_tus_router

port, directory = int(sys.argv[1]), sys.argv[2]
app = FastAPI()
app.include_router(create_tus_router(prefix="files", files_dir=directory))

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
