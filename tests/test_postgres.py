"""The throwaway server: reachable over its private socket only, and gone without a trace."""

from __future__ import annotations

import stat

import psycopg2

from hooks.postgres import throwaway_server


def test_server_answers_over_private_socket_without_tcp() -> None:
    with throwaway_server() as server:
        mode = stat.S_IMODE(server.socket_dir.stat().st_mode)
        conn = psycopg2.connect(**server.connect_kwargs())
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT current_setting('listen_addresses'), current_setting('fsync')")
                listen, fsync = cur.fetchone()
        finally:
            conn.close()
        socket_dir = server.socket_dir
    assert mode == 0o700
    assert listen == ""
    assert fsync == "off"
    assert not socket_dir.exists()
