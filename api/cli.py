"""The `seatledger` command line."""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys

from aiohttp import web


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


async def _migrate(args) -> int:
    from ledger import db
    from ledger.migrate import migrate
    dsns = await db.resolve()
    applied = await migrate(dsns.migrate)
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))
    return 0


async def _verify(args) -> int:
    from ledger.verify import tenants, verify_tenant
    from .runtime import Runtime
    rt = await Runtime.start(pool_size=2)
    expect = None
    if args.expect_head:
        s, _, h = args.expect_head.partition(":")
        expect = (int(s), h)
    bad = 0
    try:
        async with rt.pool.acquire() as conn:
            names = [args.tenant] if args.tenant else await tenants(conn)
            reports = []
            for t in names:
                rep = await verify_tenant(conn, t, expect_head=expect, pool=rt.pool)  # ranges on 2 connections
                reports.append(rep)
                if rep.ok:
                    if not args.json:
                        print(f"tenant {t}: chain intact through sequence {rep.head_seq}, head {rep.head_hash}")
                else:
                    bad += 1
                    if not args.json:
                        print(str(rep.broken))
            if args.json:
                _print_json([{"tenant": r.tenant, "ok": r.ok, "head_seq": r.head_seq, "head_hash": r.head_hash,
                              "broken": None if r.ok else r.broken.__dict__} for r in reports])
    finally:
        await rt.close()
    return 1 if bad else 0


async def _erase(args) -> int:
    import projections.directory  # noqa: F401 - registers the directory's eraser
    from ledger.erasure import erase
    from .runtime import Runtime
    rt = await Runtime.start(pool_size=2)
    try:
        had = await erase(rt.store, args.tenant, args.subject, actor="cli", reason=args.reason)
    finally:
        await rt.close()
    print(f"subject {args.subject} of tenant {args.tenant} erased" + ("" if had else " (no personal data was held)"))
    return 0


async def _tenant_create(args) -> int:
    from ledger.executor import CommandRejected
    from ledger.tenancy import CreateTenant
    from ledger.tokens import IssueToken
    from .runtime import Runtime
    rt = await Runtime.start(pool_size=2)
    try:
        try:
            await rt.bus.execute(args.name, CreateTenant(args.name, args.name, args.timezone),
                                 metadata={"actor": "cli", "source": "admin"})
        except CommandRejected as exc:
            print(f"error: {exc.detail}", file=sys.stderr)
            return 2
        except Exception as exc:  # noqa: BLE001
            from ledger.store import ConcurrencyError
            if isinstance(exc, ConcurrencyError):
                print(f"error: tenant {args.name} exists", file=sys.stderr)
                return 2
            raise
        issue = IssueToken("scim", label="created with the tenant")
        await rt.bus.execute(args.name, issue, metadata={"actor": "cli", "source": "admin"})
    finally:
        await rt.close()
    out = {"tenant": args.name, "timezone": args.timezone,
           "scim_url": f"{args.base_url.rstrip('/')}/scim/v2/{args.name}", "token": issue.token,
           "token_id": issue.token_id}
    if args.json:
        _print_json(out)
    else:
        print(f"tenant {args.name} created\nSCIM base URL: {out['scim_url']}\n"
              f"token (scope scim, shown once): {issue.token}")
    return 0


async def _token(args) -> int:
    from ledger.executor import CommandRejected
    from ledger.tokens import IssueToken, RevokeToken
    from .runtime import Runtime
    rt = await Runtime.start(pool_size=2)
    meta = {"actor": "cli", "source": "admin"}
    try:
        if args.tkcmd == "create":
            cmd = IssueToken(args.scope, label=args.label)
            await rt.bus.execute(args.tenant, cmd, metadata=meta)
            out = {"tenant": args.tenant, "scope": args.scope, "token": cmd.token, "token_id": cmd.token_id}
        else:
            await rt.bus.execute(args.tenant, RevokeToken(args.token_id), metadata=meta)
            out = {"tenant": args.tenant, "token_id": args.token_id, "revoked": True}
    except CommandRejected as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 2
    finally:
        await rt.close()
    if args.json:
        _print_json(out)
    else:
        print(out.get("token") or f"token {args.token_id} revoked")
    return 0


async def _export(args) -> int:
    from .audit_export import export_chunks, head_seq, snapshot
    from .runtime import Runtime
    rt = await Runtime.start(pool_size=2)
    out = open(args.out, "wb") if args.out else sys.stdout.buffer
    try:
        async with rt.pool.acquire() as conn:
            async with snapshot(conn):
                if await head_seq(conn, args.tenant) is None:
                    print(f"error: no such tenant {args.tenant}", file=sys.stderr)
                    return 2
                async for chunk in export_chunks(conn, args.tenant, args.format, args.from_seq, args.to_seq):
                    out.write(chunk)
        out.flush()
    finally:
        if args.out:
            out.close()
        await rt.close()
    return 0


async def _reconcile(args) -> int:
    import projections.directory  # noqa: F401 - directory tables are read
    from ledger.reconcile import reconcile
    from .runtime import Runtime
    rt = await Runtime.start(pool_size=2)
    try:
        drift, appended = await reconcile(rt.bus, rt.pool, args.tenant, fix=args.fix)
    finally:
        await rt.close()
    if args.json:
        _print_json({"tenant": args.tenant, "drift": [d.as_dict() for d in drift], "fixed": args.fix,
                     "events_appended": appended})
    else:
        if not drift:
            print(f"tenant {args.tenant}: no drift")
        for d in drift:
            print(f"{d.kind:24} pool {d.pool_id:12} user {d.user_id or '-':20} {d.detail}")
        if args.fix and drift:
            print(f"fixed: {appended} compensating event(s) appended (source reconciler)")
    return 0


async def _serve(args, demo: bool = False) -> int:
    from .app import make_app
    from .runtime import Runtime
    import signal
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)   # stop cleanly so the embedded PostgreSQL stops too
    rt = await Runtime.start()
    tokens = {}
    if demo:
        from .demo import seed
        tokens = await seed(rt)
    from .scheduler import LicenceScheduler
    scheduler = LicenceScheduler(rt.bus, rt.pool)
    scheduler.start()
    app = make_app(rt)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    base = f"http://{args.host}:{args.port}"
    print(f"seatledger listening on {base}  (PostgreSQL: {'embedded' if rt.dsns.embedded else 'configured URL'})")
    if demo:
        from .demo import explain, script
        facts = None
        if not tokens.pop("_seeded"):
            facts = await script(base, tokens)
        explain(rt, base, tokens, facts)
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        scheduler.shutdown()
        await runner.cleanup()
        await rt.close()
    return 0


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(prog="seatledger", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("migrate", help="apply database migrations")
    for name, hlp in (("serve", "run the service"), ("demo", "run the service with a seeded demo tenant")):
        sp = sub.add_parser(name, help=hlp)
        sp.add_argument("--host", default="127.0.0.1")
        sp.add_argument("--port", type=int, default=8080)
    v = sub.add_parser("verify", help="check the hash chain of every tenant (or one)")
    v.add_argument("--tenant")
    v.add_argument("--expect-head", metavar="SEQ:HASH", help="a head recorded earlier that the chain must contain")
    v.add_argument("--json", action="store_true")
    x = sub.add_parser("export", help="export a tenant's ledger (or a range) for verify_export.py")
    x.add_argument("--tenant", required=True)
    x.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    x.add_argument("--from-seq", type=int, default=1)
    x.add_argument("--to-seq", type=int)
    x.add_argument("--out", metavar="FILE", help="default: standard output")
    rc = sub.add_parser("reconcile", help="compare what the rules demand with what is held")
    rc.add_argument("--tenant", required=True)
    rc.add_argument("--fix", action="store_true", help="append compensating events (source reconciler)")
    rc.add_argument("--json", action="store_true")
    from .history_http import add_cli as _history_cli
    history_handlers = _history_cli(sub)      # rebuild, holders, licences, usage, resource, timeline
    from .billing_http import add_cli as _billing_cli
    billing_handlers = _billing_cli(sub)      # bill
    e = sub.add_parser("erase", help="erase a subject's personal data (the chain stays valid)")
    e.add_argument("--tenant", required=True)
    e.add_argument("--subject", required=True)
    e.add_argument("--reason")
    t = sub.add_parser("tenant", help="tenant administration")
    tsub = t.add_subparsers(dest="tcmd", required=True)
    tc = tsub.add_parser("create")
    tc.add_argument("name")
    tc.add_argument("--timezone", default="UTC")
    tc.add_argument("--json", action="store_true")
    tc.add_argument("--base-url", default="http://127.0.0.1:8080")
    k = sub.add_parser("token", help="bearer tokens of a tenant")
    ksub = k.add_subparsers(dest="tkcmd", required=True)
    kc = ksub.add_parser("create")
    kc.add_argument("tenant")
    kc.add_argument("--scope", required=True, choices=["scim", "admin", "auditor", "billing", "entitlement"])
    kc.add_argument("--label")
    kc.add_argument("--json", action="store_true")
    kr = ksub.add_parser("revoke")
    kr.add_argument("tenant")
    kr.add_argument("token_id")
    kr.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    handlers = {"migrate": _migrate, "verify": _verify, "erase": _erase,
                "serve": _serve, "demo": lambda a: _serve(a, demo=True)}
    handlers["tenant"] = _tenant_create
    handlers["token"] = _token
    handlers["reconcile"] = _reconcile
    handlers["export"] = _export
    handlers.update(history_handlers)
    handlers.update(billing_handlers)
    fn = handlers[args.cmd]
    try:
        from .runtime import run          # uvloop when installed (api/runtime.py)
        code = run(fn(args))
    except KeyboardInterrupt:
        code = 0
    sys.exit(code)


if __name__ == "__main__":
    main()
