"""The demo's notify_command: appends each event it is given (through its environment) to a file."""

import os
import sys
import time


def main() -> None:
    event, message = os.environ.get("UGRO_EVENT", "?"), os.environ.get("UGRO_MESSAGE", "")
    line = f"{time.strftime('%H:%M:%S')}  {event:<14} {message}\n"
    with open(sys.argv[1], "a", encoding="utf-8") as f:
        f.write(line)


if __name__ == "__main__":
    main()
