"""Gateway outages as the worker sees them: report, detect, probe, release.

The rule and the transitions are :mod:`instances.outages`; this step carries
them out. Every session end with a gateway-level reason and every ``hello``
is reported, in batches, into three Redis sorted sets per gateway (failing
instances, those of them whose attempt failed, answered instances; scored by
Redis' own clock and trimmed to the window), shared by every worker: each
evaluation sees the whole cluster's failures, not only this worker's. The
worker whose report tips the rule records the transition (conditional, so
once however many see it).

While a gateway is down, its instances' attempts are refused by the attempt
rule; the gateway loop probes it when its next probe is due, under a Redis
lock per gateway so that one probe runs at a time cluster-wide. The probe is
a real claim of one waiting instance (``store.claim_many(probes=...)``): its
session's ``hello`` brings the gateway up, its failure schedules the next
probe. Coming up releases the gateway's instances in a ramp
(``instances.outages.mark_up``); those due before the next recovery run are
hinted at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from channels.db import database_sync_to_async
from redis.exceptions import RedisError

from engine import store
from engine.state import DB_ERRORS, Held, WorkerState
from instances import outages
from instances.decisions import SessionEnd

logger = logging.getLogger("blast.worker")

# One call per gateway and batch: record what each instance did, trim the
# sets to the window (Redis' clock, the same for every worker) and count.
# KEYS: failing instances (attempts failed or sessions lost), answered ones,
# and those of the failing whose attempt failed. Ops: 'f' attempt failed,
# 'l' established session lost, 'o' answered.
REPORT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window = tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  local op, id = ARGV[i], ARGV[i + 1]
  if op == 'o' then
    redis.call('ZADD', KEYS[2], now, id)
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZREM', KEYS[3], id)
  else
    redis.call('ZADD', KEYS[1], now, id)
    redis.call('ZREM', KEYS[2], id)
    if op == 'f' then redis.call('ZADD', KEYS[3], now, id) end
  end
end
local ttl = math.ceil(window * 2000)
local counts = {}
for k = 1, 3 do
  redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', now - window)
  redis.call('PEXPIRE', KEYS[k], ttl)
  counts[k] = redis.call('ZCARD', KEYS[k])
end
return counts
"""
# Release a probe lock only if it is still ours.
UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# Take ``n`` consecutive slots of ``interval`` seconds in a gateway's ramp,
# shared by every worker: the first is the end of the slots already taken,
# or now if that is later (or, with a credit of ARGV[4] seconds, no earlier
# than that long ago: slots a pause left unused are taken at once). Returns
# the seconds from now to the first slot, as a string (Redis would truncate
# a Lua number to an integer).
PACE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval, n, credit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4])
local last = redis.call('GET', KEYS[1])
local first = now
if last then first = math.max(now - credit, tonumber(last)) end
redis.call('SET', KEYS[1], string.format('%.6f', first + n * interval), 'PX', tonumber(ARGV[3]))
return string.format('%.6f', first - now)
"""
# The ramp of N instances lasts N / rate seconds, longer if workers fall
# behind: pacing holds this much past that.
RAMP_MARGIN_S = 30.0
LATE_S = 0.5  # a ramp slot that comes later than this is taken again
# Unused gate slots a pause leaves behind, taken at once after it.
GATE_CREDIT_S = 0.5
# Slots are spaced for 1 % under the rate: the gateway counts upgrades by
# when it reads them, a few milliseconds after they were sent, and no second
# may hold more than the rate there either.
RATE_HEADROOM = 0.99
SENT_KEPT_S = 3600
WINDOW_TRIES = 5  # seconds a request may be sent on into, then it goes anyway
REPORT_CHUNK = 1000
LOOP_S = 0.5
VIEWS_EVERY_S = 1.0
COUNTS_EVERY_S = 10.0


class Outages(WorkerState):
    def _gateway_key(self, gateway_id: int, name: str) -> str:
        return f"{self.config.redis_prefix}:gw:{gateway_id}:{name}"

    def _report_keys(self, gateway_id: int) -> tuple[str, str, str]:
        key = self._gateway_key
        return key(gateway_id, "fail"), key(gateway_id, "ok"), key(gateway_id, "refused")

    def gateway_is_down(self, gateway_id: int) -> bool:
        view = self.gateways.get(gateway_id)
        return view is not None and view.down

    def gateway_suspect(self, gateway_id: int) -> bool:
        """Down, or failing enough that it may be: a breaker opening now is
        probably the gateway's doing, not the instance's."""
        if self.gateway_is_down(gateway_id):
            return True
        return self._gateway_last_failing.get(gateway_id, 0) >= self.outage_policy.minimum

    # -- what sessions report ----------------------------------------------------

    def _report(self, gateway_id: int, op: str, instance_id: int) -> None:
        if gateway_id:
            self._gateway_reports.setdefault(gateway_id, []).extend((op, str(instance_id)))
            self._gateway_wake.set()

    def gateway_answered(self, held: Held) -> None:
        """A session on ``held``'s gateway got its ``hello``: the gateway is there."""
        self._report(held.gateway_id, "o", held.instance_id)
        if held.probe:
            logger.info("📶 gateway=%s probe answered (instance=%s)", held.gateway_id, held.instance_id)
        if self.gateway_is_down(held.gateway_id):
            self._spawn_task(self._gateway_up(held.gateway_id), f"gateway-up-{held.gateway_id}")

    def gateway_session_ended(self, held: Held, end: SessionEnd, hello_at: float | None, now: float) -> None:
        """Report a session's end; a probe that was not answered schedules the next probe."""
        failure = outages.gateway_failure(
            end.reason, hello_at=hello_at, ready_at=end.ready_at, ended_at=now, policy=self.outage_policy
        )
        if failure is not None:
            self._report(held.gateway_id, failure.value, held.instance_id)
            self._last_reason[held.gateway_id] = str(end.reason)
        if held.probe:
            held.probe = False
            if hello_at is None:
                self._spawn_task(self._probe_failed(held.gateway_id, end), f"probe-failed-{held.gateway_id}")

    # -- the ramp at dispatch -----------------------------------------------------------

    async def pace(self, rows: list[store.Row]) -> list[store.Row]:
        """The rows to start now; the others wait for their slot in their
        gateway's ramp and are reconciled again when it comes.

        Coming up releases every waiting instance of a gateway at once
        (``outages.mark_up``); the ramp is kept here, at dispatch: while the
        gateway ramps, every start takes the next free slot of
        ``1 / connect_rate`` seconds from a counter in Redis that every
        worker shares, in random order and at a random point of its slot, so
        no second holds more than the rate however the instances are spread
        over workers. A slot that comes late (this worker was busy) is taken
        again rather than started with the others that came late with it.
        Other gateways' instances are not paced: a restart that needs no ramp
        reconnects as fast as the workers can.
        """
        now = time.time()
        if any(not row.gateway_down and self.gateway_is_down(row.gateway_id) for row in rows):
            # The database says up, this worker's view still says down: it came up just now.
            await self._refresh_gateways(force=True)
        rate = self.outage_policy.connect_rate
        ready: list[store.Row] = []
        ramping: dict[int, list[int]] = {}
        for row in rows:
            view = self.gateways.get(row.gateway_id)
            running = self.gateway_running.get(row.gateway_id, 0)
            if row.id in self._paced or view is None or not view.ramping(now, running, rate, RAMP_MARGIN_S):
                ready.append(row)
            else:
                ramping.setdefault(row.gateway_id, []).append(row.id)
        for gateway_id, ids in ramping.items():
            random.shuffle(ids)
            await self._schedule_slots(gateway_id, ids)
        return ready

    async def _schedule_slots(self, gateway_id: int, ids: list[int]) -> None:
        interval = 1.0 / self.outage_policy.connect_rate
        try:
            first = await self._take_slots(gateway_id, len(ids))
        except (RedisError, OSError):
            first = 0.0  # no shared counter: this worker's own pace still holds
        loop = asyncio.get_running_loop()
        now = time.time()
        for i, instance_id in enumerate(ids):
            delay = first + (i + random.random()) * interval
            self._pacing.add(instance_id)
            loop.call_later(delay, self._slot_came, instance_id, gateway_id, now + delay)

    async def _take_slots(self, gateway_id: int, count: int, counter: str = "pace", credit_s: float = 0.0) -> float:
        """Take ``count`` consecutive slots in the gateway's ramp: the seconds
        from now to the first one (negative: within the credit, at once)."""
        assert self.redis is not None
        rate = self.outage_policy.connect_rate
        ttl_ms = int(2000 * (self.gateway_running.get(gateway_id, 0) / rate + RAMP_MARGIN_S))
        key = self._gateway_key(gateway_id, counter)
        interval = 1.0 / (rate * RATE_HEADROOM)
        return float(await self.redis.eval(PACE, 1, key, interval, count, ttl_ms, credit_s))

    async def gate(self, gateway_id: int) -> bool:
        """The last step before an upgrade while the gateway ramps: wait for
        the next free slot of a second counter that every worker shares.
        True when the gateway ramps (the request then passes :meth:`regate`).

        The ramp's slots are taken when instances are reconciled; between a
        slot and the upgrade lie a database claim and a lease, which a busy
        database can hold up and then let through together. This gate spaces
        the upgrades themselves ``1 / connect_rate`` apart, cluster-wide. A
        pause leaves at most :data:`GATE_CREDIT_S` of unused slots behind,
        taken at once afterwards (so a stalled second costs the ramp little);
        :meth:`regate` keeps any second from holding more than the rate.
        """
        view = self.gateways.get(gateway_id)
        rate = self.outage_policy.connect_rate
        if view is None or not view.ramping(time.time(), self.gateway_running.get(gateway_id, 0), rate, RAMP_MARGIN_S):
            return False
        try:
            delay = await self._take_slots(gateway_id, 1, counter="gate", credit_s=GATE_CREDIT_S)
        except (RedisError, OSError):
            return True  # the ramp's own slots still spread them
        if delay > 0:
            await asyncio.sleep(delay)
        return True

    async def regate(self, gateway_id: int) -> None:
        """Right before the upgrade request is written, its TCP connection
        open: the request takes its place in the cluster's count of this
        second's upgrades (``<prefix>:gw:<id>:sent``, a hash of epoch second
        -> upgrades, kept an hour). A second that already holds
        ``connect_rate`` sends it on into the next one, so no second holds
        more than the rate, whatever paused between the gate and here (a
        busy loop, the credit after a stall)."""
        if self.redis is None:
            return
        key = self._gateway_key(gateway_id, "sent")
        rate = self.outage_policy.connect_rate
        for _ in range(WINDOW_TRIES):
            second = int(time.time())
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    pipe.hincrby(key, str(second), 1)
                    pipe.expire(key, SENT_KEPT_S)
                    count, _ = await pipe.execute()
                if count <= rate:
                    return
                await self.redis.hincrby(key, str(second), -1)
            except (RedisError, OSError):
                return  # the gate's spacing still holds
            await asyncio.sleep(max(0.0, second + 1 - time.time()) + random.random() / rate)

    def _slot_came(self, instance_id: int, gateway_id: int, due: float) -> None:
        if time.time() - due > LATE_S and not self.stopping and instance_id not in self._retaken:
            # Once: a worker too busy for any slot to come on time still starts them.
            self._retaken.add(instance_id)
            late = self._late_slots.setdefault(gateway_id, [])
            late.append(instance_id)
            if len(late) == 1:
                self._spawn_task(self._retake_slots(gateway_id), f"retake-slots-{gateway_id}")
            return
        self._retaken.discard(instance_id)
        self._pacing.discard(instance_id)
        self._paced.add(instance_id)
        self.enqueue([instance_id], wake_senders=False)

    async def _retake_slots(self, gateway_id: int) -> None:
        await asyncio.sleep(0)  # gather every slot that came late in this turn of the loop
        ids = self._late_slots.pop(gateway_id, [])
        if ids:
            await self._schedule_slots(gateway_id, ids)

    # -- the loop --------------------------------------------------------------------

    async def _gateway_loop(self) -> None:
        try:
            async with asyncio.timeout(LOOP_S):
                await self._gateway_wake.wait()
        except TimeoutError:
            pass
        self._gateway_wake.clear()
        await self._refresh_gateways()
        await self._push_reports()
        await self._probe_due()
        await asyncio.sleep(0.05)  # reports arriving in a burst go in one batch

    async def _refresh_gateways(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._views_at >= VIEWS_EVERY_S:
            self.gateways = await database_sync_to_async(outages.load_views)()
            self._views_at = now
        if force or now - self._counts_at >= COUNTS_EVERY_S:
            self.gateway_running = await database_sync_to_async(outages.running_counts)()
            self._counts_at = now

    async def _push_reports(self) -> None:
        assert self.redis is not None
        reports, self._gateway_reports = self._gateway_reports, {}
        for gateway_id, ops in reports.items():
            try:
                failing, answered, refused = 0, 0, 0
                for start in range(0, len(ops), 2 * REPORT_CHUNK):
                    chunk = ops[start : start + 2 * REPORT_CHUNK]
                    failing, answered, refused = await self.redis.eval(
                        REPORT,
                        3,
                        *self._report_keys(gateway_id),
                        self.outage_policy.window_s,
                        *chunk,
                    )
            except (RedisError, OSError):
                # Kept for the next turn: an outage is still seen once Redis is back.
                self._gateway_reports.setdefault(gateway_id, []).extend(ops)
                raise
            self._gateway_last_failing[gateway_id] = int(failing)
            if self.gateway_is_down(gateway_id) or gateway_id not in self.gateways:
                continue
            running = self.gateway_running.get(gateway_id, 0)
            if outages.is_down(int(failing), int(answered), running, self.outage_policy, int(refused)):
                await self._gateway_down(gateway_id, int(failing), running)

    async def _gateway_down(self, gateway_id: int, failing: int, running: int) -> None:
        now = time.time()
        recorded, delivery_ids = await database_sync_to_async(store.gateway_down)(
            gateway_id,
            reason=self._last_reason.get(gateway_id, ""),
            now=now,
            actor=self.actor,
            failing=failing,
            running=running,
            policy=self.outage_policy,
        )
        await self._refresh_gateways(force=True)
        if recorded:
            logger.warning(
                "📴 gateway=%s down: %d of %d running instances failed with gateway-level reasons, none answered; "
                "its instances wait for its probe",
                gateway_id,
                failing,
                running,
            )
            await self._dispatch_alerts(delivery_ids)

    async def _gateway_up(self, gateway_id: int) -> None:
        now = time.time()
        release, delivery_ids = await database_sync_to_async(store.gateway_up)(
            gateway_id,
            now=now,
            actor=self.actor,
            policy=self.outage_policy,
        )
        await self._refresh_gateways(force=True)
        if release is None:
            return
        if self.redis is not None:
            try:
                await self.redis.delete(*self._report_keys(gateway_id))
            except (RedisError, OSError):
                pass  # the sets expire by themselves
        self._gateway_last_failing.pop(gateway_id, None)
        await self._unlock_probe(gateway_id)
        logger.warning(
            "📶 gateway=%s up after %.0fs: %d instances released at %g per second, %d breakers closed",
            gateway_id,
            release.down_s,
            len(release.released),
            self.outage_policy.connect_rate,
            release.breakers_closed,
        )
        if release.released:
            await self.send_routed(release.released)
        await self._dispatch_alerts(delivery_ids)

    async def _dispatch_alerts(self, delivery_ids: list[int]) -> None:
        if not delivery_ids:
            return
        from monitoring.tasks import dispatch

        try:
            await database_sync_to_async(dispatch)(delivery_ids)
        except Exception:
            logger.warning("⚠️ %d alert deliveries left for the delivery sweep", len(delivery_ids))

    # -- probes ----------------------------------------------------------------------

    async def _probe_due(self) -> None:
        if self.stopping:
            return
        now = time.time()
        for view in list(self.gateways.values()):
            if not view.down or view.id in self._probing:
                continue
            if view.next_probe_at is not None and view.next_probe_at > now:
                continue
            if await self._lock_probe(view.id):
                self._spawn_task(self._probe(view.id), f"probe-{view.id}")

    async def _lock_probe(self, gateway_id: int) -> bool:
        assert self.redis is not None
        ttl_s = self.session_config.open_timeout + self.session_config.hello_timeout + self.config.lease_ttl
        locked = await self.redis.set(
            self._gateway_key(gateway_id, "probe"), self.worker_id, nx=True, px=int(ttl_s * 1000)
        )
        if locked:
            self._probing.add(gateway_id)
        return bool(locked)

    async def _unlock_probe(self, gateway_id: int) -> None:
        if gateway_id not in self._probing:
            return
        self._probing.discard(gateway_id)
        if self.redis is None:
            return
        try:
            await self.redis.eval(UNLOCK, 1, self._gateway_key(gateway_id, "probe"), self.worker_id)
        except (RedisError, OSError):
            pass  # it expires by itself

    async def _probe(self, gateway_id: int) -> None:
        """Claim one waiting instance of the gateway and attempt it: the probe."""
        try:
            rows = await database_sync_to_async(store.probe_candidates)(gateway_id)
            rows = [row for row in rows if row.id not in self.held and not self._is_starting(row.id)]
            if not rows:
                await database_sync_to_async(outages.probe_failed)(
                    gateway_id, now=time.time(), policy=self.outage_policy
                )
                await self._unlock_probe(gateway_id)
                return
            logger.info("📡 gateway=%s probing with instance=%s", gateway_id, rows[0].id)
            await self._start(rows[:1], probes=frozenset({rows[0].id}))
            if not any(h.probe for h in self.held.values() if h.gateway_id == gateway_id):
                # The claim did not happen (a race for the lease): try again at the next turn.
                await self._unlock_probe(gateway_id)
        except BaseException:
            await self._unlock_probe(gateway_id)
            raise

    async def _probe_failed(self, gateway_id: int, end: SessionEnd) -> None:
        try:
            delay = await database_sync_to_async(outages.probe_failed)(
                gateway_id, now=time.time(), policy=self.outage_policy
            )
        except DB_ERRORS:
            delay = None
        finally:
            await self._unlock_probe(gateway_id)
        if delay is not None:
            logger.info("📡 gateway=%s still down (%s); next probe in %.1fs", gateway_id, end.reason, delay)
        await self._refresh_gateways(force=True)
