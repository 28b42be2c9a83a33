"""Make the CurveZMQ key pairs of a run: `python -m launch.keys DIR [--client NAME ...]`.

Writes (see core/security.py for what each file is for):
    DIR/server.key, DIR/server.key_secret            the services' key pair
    DIR/clients/NAME.key, DIR/clients/NAME.key_secret  one pair per client name (default: "client")

Every client key in DIR/clients/ is authorised. To refuse a client later, delete its two files on the
hosts that run services and restart the run. Secret files are readable by their owner only.
With security.curve=true and no security.keys_dir, the launcher calls this for each run by itself.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import zmq.auth


def _owner_only(path: Path) -> None:
    os.chmod(path, 0o600 if path.is_file() else 0o700)


def generate_keys(directory: str | os.PathLike, clients: tuple[str, ...] = ("client",),
                  overwrite: bool = False) -> Path:
    """Create the server pair and one pair per client name in `directory`; return the directory."""
    directory = Path(directory).expanduser()
    if (directory / "server.key_secret").exists() and not overwrite:
        raise FileExistsError(f"{directory} already holds a server key pair; pass overwrite=True (--overwrite) "
                              f"to replace it, which locks out every host that has the old keys")
    for name in clients:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"client name '{name}' must be a plain file name")
    (directory / "clients").mkdir(parents=True, exist_ok=True)
    _owner_only(directory)
    _owner_only(directory / "clients")
    zmq.auth.create_certificates(directory, "server")
    _owner_only(directory / "server.key_secret")
    for name in clients:
        zmq.auth.create_certificates(directory / "clients", name)
        _owner_only(directory / "clients" / f"{name}.key_secret")
    return directory


def ensure_run_keys(cfg) -> Path | None:
    """With security.curve on: the run's keys directory, made in <run_dir>/keys if the config names none."""
    if not cfg.security.curve:
        return None
    from core.security import keys_dir

    directory = keys_dir(cfg)
    if cfg.security.keys_dir:
        if not (directory / "server.key").is_file():
            raise FileNotFoundError(f"security.keys_dir={directory} holds no server.key: make the keys with "
                                    f"`python -m launch.keys {directory}`")
        return directory
    if not (directory / "server.key_secret").is_file():
        generate_keys(directory, (cfg.security.client,))
    return directory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory")
    parser.add_argument("--client", action="append", default=None,
                        help="a client key pair to make (repeatable); default: one named 'client'")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing server key pair")
    args = parser.parse_args(argv)
    try:
        directory = generate_keys(args.directory, tuple(args.client or ["client"]), args.overwrite)
    except (FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"keys written to {directory}; run with security.curve=true security.keys_dir={directory.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
