#!/usr/bin/env python3
"""Uploads CDR files to an SFTP drop with paramiko, as the curriculum's CDR generator does.

Each file goes to `<folder>/<its name>`; paramiko's `put` checks the stored size with a stat
afterwards. Prints `uploaded N files` on success.

Exit codes: 0 uploaded; 2 authentication refused; 3 an upload refused (the server's reason is
printed).

Usage: sftp_upload.py --port P [--host H] [--user U] [--password PW] [--folder upload] FILE...
"""
import argparse
import os
import sys

import paramiko


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=10022)
    parser.add_argument("--user", default="cdr_data")
    parser.add_argument("--password", default="password")
    parser.add_argument("--folder", default="upload")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()

    transport = paramiko.Transport((args.host, args.port))
    try:
        try:
            transport.connect(username=args.user, password=args.password)
        except paramiko.AuthenticationException as e:
            print(f"authentication refused: {e}")
            return 2
        sftp = paramiko.SFTPClient.from_transport(transport)
        for path in args.files:
            remote = f"{args.folder}/{os.path.basename(path)}" if args.folder else os.path.basename(path)
            try:
                sftp.put(path, remote)
            except (IOError, OSError) as e:
                print(f"upload of {remote} refused: {e}")
                return 3
        print(f"uploaded {len(args.files)} files")
        return 0
    finally:
        transport.close()


if __name__ == "__main__":
    sys.exit(main())
