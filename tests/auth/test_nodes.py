"""Two app nodes on one database: keys, replays and revocations agree across them."""

from __future__ import annotations

from typing import Any

from tests.auth.helpers import TOKEN_URL, backend_form, backend_token, bearer, public_jwks, register, rsa_key


async def test_a_token_from_one_node_works_on_another_and_a_replay_fails_there(client_factory: Any,
                                                                              database_url: str) -> None:
    key = rsa_key()
    register(database_url, jwks=public_jwks(key))
    async with client_factory(auth="on") as a, client_factory(auth="on") as b:
        form = backend_form(key)
        r = await a.post(TOKEN_URL, data=form)
        assert r.status_code == 200
        token = r.json()["access_token"]
        assert (await b.get("/Patient", headers=bearer(token))).status_code == 200  # b loads a's key by kid
        r = await b.post(TOKEN_URL, data=form)  # the same assertion on the other node
        assert r.status_code == 401 and "replay" in r.json()["error_description"]


async def test_a_rotation_on_one_node_is_learnt_by_the_other(client_factory: Any, database_url: str) -> None:
    from fhir_server.auth.keys import rotate_keys

    key = rsa_key()
    register(database_url, jwks=public_jwks(key))
    async with client_factory(auth="on") as a, client_factory(auth="on") as b:
        old = await backend_token(a, key)
        assert (await b.get("/Patient", headers=bearer(old))).status_code == 200
        app_a = a._transport.app
        await app_a.state.storage.write(lambda tx: rotate_keys(tx.conn, 30, 300))
        await app_a.state.storage.run_read(app_a.state.auth.keys.load)
        new = await backend_token(a, key)
        b._transport.app.state.auth.keys._loaded_at = 0.0  # past the 1 s reload floor
        assert (await b.get("/Patient", headers=bearer(new))).status_code == 200
        assert (await b.get("/Patient", headers=bearer(old))).status_code == 200


async def test_a_revocation_on_one_node_reaches_the_other(client_factory: Any, database_url: str) -> None:
    key = rsa_key()
    register(database_url, jwks=public_jwks(key))
    async with client_factory(auth="on") as a, client_factory(auth="on") as b:
        token = await backend_token(a, key)
        assert (await b.get("/Patient", headers=bearer(token))).status_code == 200
        form = backend_form(key)
        auth = {k: form[k] for k in ("client_assertion_type", "client_assertion")}
        assert (await a.post("http://testserver/auth/revoke", data={"token": token, **auth})).status_code == 200
        assert (await a.get("/Patient", headers=bearer(token))).status_code == 401  # at once where revoked
        b._transport.app.state.auth._revocations_at = 0.0  # the other node's next poll (every 5 s)
        assert (await b.get("/Patient", headers=bearer(token))).status_code == 401
