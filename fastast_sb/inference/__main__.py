"""``python -m fastast_sb.inference {export,import,onnx,tag} ...``."""

import sys

from fastast_sb.inference.cli import manage_main

if __name__ == "__main__":
    sys.exit(manage_main())
