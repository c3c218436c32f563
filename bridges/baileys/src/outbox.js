/**
 * Exactly-once sending for one instance (PROTOCOL.md section 2).
 *
 * The platform sends at least once; WhatsApp (through Baileys) would deliver
 * the same message twice if asked twice, so the bridge deduplicates. Each
 * client message id gets a WhatsApp message id derived from it
 * (`waIdFor`), and a record in the store's dedupe map:
 *
 *   sending  the intent is stored, `sendMessage` was called
 *   sent     Baileys wrote the stanza to WhatsApp; the server ack is awaited
 *   acked    WhatsApp acked it          -> a resend gets the same `ack`
 *   nacked   WhatsApp acked it with an error -> a resend gets the same `nack`
 *
 * A send that throws never left: its record is removed and it is nacked with
 * `permanent: false`, so the platform may send the same id again. A message
 * that needs preparing first (a media send fetches its file) is prepared
 * after the dedupe check and before its record is written: a preparation
 * that fails is a transient nack with the error it names
 * (`media_unavailable`) and leaves nothing behind. A record
 * left in `sending` or `sent` by a socket that ended (a drop, a bridge crash)
 * is in doubt: WhatsApp may have the message. It is never sent again; a
 * resend is answered with `ack` and the derived id, and logged `IN-DOUBT`
 * (at most once, never twice).
 *
 * One `Outbox` serves every session of its instance in this process, so a
 * duplicate that arrives while the first send is still in flight, on the
 * same session or on the one that replaced it, waits for that send's outcome
 * instead of sending again. A `channel` is what a session lends the outbox:
 * `transmit(waId, to, content)` (Baileys' `sendMessage`; `content` is what
 * the message's `prepare()` gave, or `{text}`) and `reply(frame)`.
 */
import { createHash } from 'node:crypto';
import { errorFields } from './log.js';

/** Baileys' own ids are "3EB0" and 18 upper-case hex digits (generateMessageIDV2). */
const WA_ID_HEX_DIGITS = 18;
const RECEIPT_RANK = { delivered: 1, read: 2 };

/** The WhatsApp message id for client message `clientId` of `instance`. */
export function waIdFor(instance, clientId) {
  const digest = createHash('sha256').update(`${instance}\0${clientId}`).digest('hex');
  return `3EB0${digest.slice(0, WA_ID_HEX_DIGITS).toUpperCase()}`;
}

/** The protocol error of a WhatsApp ack error code (`<ack error="479">`). */
function waError(code) {
  return `whatsapp_error_${code}`;
}

export class Outbox {
  constructor({ store, instance, log }) {
    this.store = store;
    this.instance = instance;
    this.log = log;
    this.flights = new Map(); // client id -> flight
    this.byWaId = new Map(); // WhatsApp id -> flight
  }

  /**
   * Sends `message` at most once over `channel`, answering every `send` of
   * that id (this one and duplicates) with `ack` or `nack`. `message` is
   * `{id, to, text}`, or `{id, to, prepare}` where `prepare()` resolves with
   * the content to transmit (a media send's file) and may reject with an
   * error whose `nackError` names the transient nack to answer.
   */
  async submit(message, channel) {
    const inFlight = this.flights.get(message.id);
    if (inFlight) {
      inFlight.waiters.add(channel);
      this.log.info({ instance: this.instance, id: message.id }, 'DUPLICATE in flight');
      return;
    }
    const flight = {
      clientId: message.id,
      waId: waIdFor(this.instance, message.id),
      state: 'checking',
      channel,
      channelEnded: false,
      waiters: new Set([channel]),
    };
    this.flights.set(flight.clientId, flight);
    this.byWaId.set(flight.waId, flight);
    try {
      const record = await this.store.getSent(this.instance, flight.clientId);
      if (record) {
        this.log.info({ instance: this.instance, id: flight.clientId, state: record.state }, 'DUPLICATE');
        this.settle(flight, this.answerFor(flight.clientId, record));
        return;
      }
    } catch (err) {
      this.log.error({ instance: this.instance, id: flight.clientId, ...errorFields(err) }, 'STORE-FAILED');
      this.settle(flight, { type: 'nack', error: 'store_unavailable', permanent: false });
      return;
    }
    const content = await this.prepare(flight, message);
    if (content === null) return;
    try {
      await this.store.putSent(this.instance, flight.clientId, { wa_id: flight.waId, state: 'sending', to: message.to });
    } catch (err) {
      this.log.error({ instance: this.instance, id: flight.clientId, ...errorFields(err) }, 'STORE-FAILED');
      this.settle(flight, { type: 'nack', error: 'store_unavailable', permanent: false });
      return;
    }
    flight.state = 'sending';
    if (flight.channelEnded) {
      // Its socket ended while the record was read: nothing was sent, so a resend may send.
      await this.forget(flight);
      this.settle(flight, { type: 'nack', error: 'send_failed', permanent: false });
      return;
    }
    await this.transmit(flight, message, content);
  }

  /**
   * The content to transmit for `message`, or null when it could not be
   * prepared (the flight is then answered). Nothing is stored yet, so a
   * failure here leaves no record: a resend is sent.
   */
  async prepare(flight, message) {
    if (typeof message.prepare !== 'function') return { text: message.text };
    flight.state = 'preparing';
    let content;
    try {
      content = await message.prepare();
    } catch (err) {
      const error = typeof err?.nackError === 'string' ? err.nackError : 'send_failed';
      const marker = error === 'media_unavailable' ? 'MEDIA-UNAVAILABLE' : 'PREPARE-FAILED';
      this.log.warn({ instance: this.instance, id: flight.clientId, ...errorFields(err) }, marker);
      this.settle(flight, { type: 'nack', error, permanent: false });
      return null;
    }
    if (flight.channelEnded) {
      // Its socket ended while the file was fetched: nothing was sent or stored.
      this.settle(flight, { type: 'nack', error: 'send_failed', permanent: false });
      return null;
    }
    return content;
  }

  async transmit(flight, message, content) {
    try {
      await flight.channel.transmit(flight.waId, message.to, content);
    } catch (err) {
      this.log.warn({ instance: this.instance, id: flight.clientId, ...errorFields(err) }, 'SEND-FAILED');
      await this.forget(flight);
      this.settle(flight, { type: 'nack', error: 'send_failed', permanent: false });
      return;
    }
    if (flight.state !== 'sending') return; // the server ack came first
    flight.state = 'sent';
    await this.record(flight, { state: 'sent' });
    if (flight.channelEnded) this.settleInDoubt(flight);
  }

  /** WhatsApp's ack of message `waId` (`error`: its error code, if any). */
  async serverAck(waId, error) {
    const flight = this.byWaId.get(waId);
    const update = error ? { state: 'nacked', error: waError(error) } : { state: 'acked' };
    if (!flight || flight.state === 'checking' || flight.state === 'preparing') {
      await this.lateAck(waId, update);
      return;
    }
    flight.state = update.state;
    await this.record(flight, update);
    this.log.info({ instance: this.instance, id: flight.clientId, wa_id: waId, error }, error ? 'NACK' : 'ACK');
    this.settle(flight, this.answerFor(flight.clientId, { wa_id: waId, ...update }));
  }

  /** An ack for a message no longer in flight: record it for later resends. */
  async lateAck(waId, update) {
    const clientId = await this.store.clientIdFor(this.instance, waId);
    const record = clientId === null ? null : await this.store.getSent(this.instance, clientId);
    if (record && (record.state === 'sending' || record.state === 'sent')) {
      await this.store.putSent(this.instance, clientId, { ...record, ...update });
    }
  }

  /**
   * The client id to report a `status` receipt (delivered, read) of WhatsApp
   * message `waId` for, or null: unknown message, or no progress over the
   * last receipt reported.
   */
  async receipt(waId, status) {
    const clientId = await this.store.clientIdFor(this.instance, waId);
    if (clientId === null) return null;
    const record = await this.store.getSent(this.instance, clientId);
    if (!record || (RECEIPT_RANK[record.receipt] ?? 0) >= RECEIPT_RANK[status]) return null;
    await this.store.putSent(this.instance, clientId, { ...record, receipt: status });
    return clientId;
  }

  /** `channel`'s socket ended: its sends still awaiting an ack are in doubt. */
  channelEnded(channel) {
    for (const flight of [...this.flights.values()]) {
      flight.waiters.delete(channel);
      if (flight.channel !== channel) continue;
      flight.channelEnded = true;
      if (flight.state === 'sent') this.settleInDoubt(flight);
      // 'checking', 'preparing' and 'sending' settle when their store read, preparation or transmit returns.
    }
  }

  settleInDoubt(flight) {
    this.log.warn({ instance: this.instance, id: flight.clientId, wa_id: flight.waId }, 'IN-DOUBT');
    this.settle(flight, { type: 'ack', server_id: flight.waId });
  }

  /** The answer to a resend of a message with `record`. */
  answerFor(clientId, record) {
    if (record.state === 'nacked') return { type: 'nack', error: record.error, permanent: true };
    if (record.state !== 'acked') {
      this.log.warn({ instance: this.instance, id: clientId, wa_id: record.wa_id, state: record.state }, 'IN-DOUBT');
    }
    return { type: 'ack', server_id: record.wa_id };
  }

  settle(flight, frame) {
    this.flights.delete(flight.clientId);
    this.byWaId.delete(flight.waId);
    for (const waiter of flight.waiters) waiter.reply({ type: frame.type, id: flight.clientId, ...frame });
    flight.waiters.clear();
  }

  async record(flight, update) {
    try {
      const record = (await this.store.getSent(this.instance, flight.clientId)) ?? { wa_id: flight.waId };
      await this.store.putSent(this.instance, flight.clientId, { ...record, ...update });
    } catch (err) {
      // The message went out; losing this update only weakens a later answer to "in doubt".
      this.log.error({ instance: this.instance, id: flight.clientId, ...errorFields(err) }, 'STORE-FAILED');
    }
  }

  async forget(flight) {
    try {
      await this.store.deleteSent(this.instance, flight.clientId, flight.waId);
    } catch (err) {
      this.log.error({ instance: this.instance, id: flight.clientId, ...errorFields(err) }, 'STORE-FAILED');
    }
  }
}
