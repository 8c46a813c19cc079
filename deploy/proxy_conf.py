"""Writes the proxy's nginx configuration: nginx.conf with each ${NAME} taken from the environment file.

ecommerce-assets-proxy.service runs it before nginx at every start, so the certificate, the password
file, the ports and the webserver's port are set in one place, the services' environment file:

    python proxy_conf.py /etc/ecommerce-assets/ecommerce-assets.env /etc/ecommerce-assets/nginx.conf OUT

Only the names the template uses are read: the file's secrets (the database password, the webhook
URL) never reach nginx, its configuration or its environment.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

NAME = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
# A value is one nginx word: a space, a quote, ';' or a brace would end or inject a directive.
WORD = re.compile(r"[^\s;{}'\"#$\\]+")


def read_env(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as systemd's EnvironmentFile= reads them (a later line wins; quotes removed)."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";")) and "=" in line:
            key, value = line.split("=", 1)
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            values[key.strip()] = value
    return values


def render(template: str, values: dict[str, str], source: str) -> str:
    """The template with its names filled in; a missing or unsafe value is a one-line error."""
    names = sorted(set(NAME.findall(template)))
    missing = [n for n in names if not values.get(n)]
    if missing:
        raise ValueError(f"{source}: set {', '.join(missing)} (the proxy's nginx.conf uses them)")
    for name in names:
        if not WORD.fullmatch(values[name]):
            raise ValueError(f"{source}: {name}={values[name]!r}: use one word, without quotes, ';', '$' or braces")
    return NAME.sub(lambda m: values[m.group(1)], template)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("env_file", type=Path, help="the services' environment file (KEY=VALUE lines)")
    parser.add_argument("template", type=Path, help="deploy/nginx.conf")
    parser.add_argument("output", type=Path, help="where to write the configuration nginx runs")
    args = parser.parse_args(argv)
    try:
        text = render(args.template.read_text(), read_env(args.env_file), str(args.env_file))
    except (OSError, ValueError) as e:
        sys.exit(f"proxy_conf.py: {e}")
    args.output.write_text(text)


if __name__ == "__main__":
    main()
