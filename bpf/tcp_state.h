/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * TCP connection tracking for one session: the state machine and the
 * sequence/acknowledgement window checks. Pure functions of the session
 * value and one parsed segment; no maps, so the same code judges an entry
 * in ms_sessions and a session still being built on the stack.
 *
 * Design (docs/ARCHITECTURE.md, "Session tracking"):
 *  - the state is the initiator's RFC 793 state as far as a middlebox can
 *    tell (SYN_RECV = the responder's SYN-ACK was seen, TIME_WAIT = both
 *    FINs acknowledged), derived after every segment from per-side facts
 *    (FIN sent, peer FIN acknowledged), so a lost update heals itself with
 *    the next segment;
 *  - window checks in the spirit of "Real Stateful TCP Packet Filtering"
 *    (van Rooij), with every bound widened by a further window so that
 *    reordering, retransmission and the lost updates of concurrent CPUs
 *    never cause a false drop: only segments clearly outside are dropped;
 *  - a RST is honoured only when its sequence number is within a window
 *    of where the sender is (RFC 5961 idea).
 * Include after <linux/bpf.h>, <linux/tcp.h> and datapath.h.
 */
#ifndef MICROSEG_BPF_TCP_STATE_H
#define MICROSEG_BPF_TCP_STATE_H

#define MS_TCP_FIN 0x01
#define MS_TCP_SYN 0x02
#define MS_TCP_RST 0x04
#define MS_TCP_PSH 0x08
#define MS_TCP_ACK 0x10
#define MS_TCP_URG 0x20

/* Windows are at least this large (an unscaled maximum) ... */
#define MS_TCP_MIN_WINDOW 65535U
/* ... and at most this, so two windows still compare in sequence space. */
#define MS_TCP_MAX_WINDOW (1U << 29)
/* Window scale assumed when a SYN was not seen (picked-up session). */
#define MS_TCP_UNKNOWN_WSCALE 14
#define MS_TCP_MAX_WSCALE 14

/* What the tracker needs of one TCP segment, host order. */
struct ms_tcp_packet {
	__u32 seq;
	__u32 ack;
	__u32 payload_len;
	__u16 window; /* as on the wire, unscaled */
	__u8 flags;   /* MS_TCP_* */
	__u8 wscale;  /* window scale option (SYN only), once ms_tcp_read_window_scale() ran */
	__u8 has_wscale;
	__u8 options_pending; /* a SYN whose options were not walked yet */
	__u8 options_len;     /* bytes of TCP options */
	__u16 options_offset; /* from the start of the frame */
};

/*
 * Returned by ms_tcp_advance when a SYN arrives for a finished connection:
 * the port pair is being reused and the caller starts a new session (through
 * policy) instead.
 */
#define MS_TCP_RESTART 0xFFFFFFFEU

static __always_inline int ms_seq_before(__u32 a, __u32 b)
{
	return (__s32)(a - b) < 0;
}

static __always_inline int ms_seq_after(__u32 a, __u32 b)
{
	return (__s32)(b - a) < 0;
}

/*
 * Flag combinations no TCP stack sends in any state: SYN with FIN or RST,
 * and anything but a SYN or a RST without ACK (NULL, FIN, XMAS scans).
 */
static __always_inline int ms_tcp_flags_invalid(__u8 flags)
{
	if ((flags & MS_TCP_SYN) && (flags & (MS_TCP_FIN | MS_TCP_RST)))
		return 1;
	if (!(flags & (MS_TCP_ACK | MS_TCP_SYN | MS_TCP_RST)))
		return 1;
	return 0;
}

static __always_inline __u32 ms_tcp_clamp_window(__u64 window)
{
	if (window < MS_TCP_MIN_WINDOW)
		return MS_TCP_MIN_WINDOW;
	if (window > MS_TCP_MAX_WINDOW)
		return MS_TCP_MAX_WINDOW;
	return (__u32)window;
}

/* Scale of `side`'s windows: RFC 7323 applies it only if both SYNs offered one. */
static __always_inline __u8 ms_tcp_window_scale(const struct ms_tcp_side *side,
						const struct ms_tcp_side *other)
{
	if (!(side->flags & MS_TCP_SIDE_F_SYN) || !(other->flags & MS_TCP_SIDE_F_SYN))
		return MS_TCP_UNKNOWN_WSCALE;
	if (!(side->flags & MS_TCP_SIDE_F_WSCALE) || !(other->flags & MS_TCP_SIDE_F_WSCALE))
		return 0;
	return side->wscale > MS_TCP_MAX_WSCALE ? MS_TCP_MAX_WSCALE : side->wscale;
}

/* Sequence space a segment occupies: payload plus one per SYN and FIN. */
static __always_inline __u32 ms_tcp_segment_end(const struct ms_tcp_packet *p)
{
	__u32 end = p->seq + p->payload_len;
	if (p->flags & MS_TCP_SYN)
		end += 1;
	if (p->flags & MS_TCP_FIN)
		end += 1;
	return end;
}

/* A side's SYN (or SYN-ACK) starts its sequence space and window. */
static __always_inline void ms_tcp_side_init_from_syn(struct ms_tcp_side *side,
						      const struct ms_tcp_packet *p)
{
	side->end = ms_tcp_segment_end(p);
	side->max_win = p->window; /* windows in SYNs are never scaled */
	side->wscale = p->wscale;
	side->flags = (side->flags & MS_TCP_SIDE_F_MAX_END_KNOWN) | MS_TCP_SIDE_F_SEQ_KNOWN |
		      MS_TCP_SIDE_F_SYN | (p->has_wscale ? MS_TCP_SIDE_F_WSCALE : 0);
}

/*
 * Is a non-SYN segment from `snd` to `rcv` within the windows? Generous:
 * every bound has at least one extra window of slack (see the header).
 */
static __always_inline int ms_tcp_in_window(const struct ms_tcp_side *snd,
					    const struct ms_tcp_side *rcv,
					    const struct ms_tcp_packet *p)
{
	/* What the receiver lets the sender have in flight, and vice versa. */
	__u32 rcv_window = ms_tcp_clamp_window(rcv->max_win);
	__u32 snd_window = ms_tcp_clamp_window(snd->max_win);
	__u32 end = ms_tcp_segment_end(p);

	if (snd->flags & MS_TCP_SIDE_F_SEQ_KNOWN) {
		/* Older than anything the receiver may still be missing, twice over. */
		if (ms_seq_before(end, snd->end - 2 * rcv_window))
			return 0;
		/* Beyond what the receiver ever granted, plus a window. */
		if ((snd->flags & MS_TCP_SIDE_F_MAX_END_KNOWN) &&
		    ms_seq_after(p->seq, snd->max_end + rcv_window))
			return 0;
	}
	if ((p->flags & MS_TCP_ACK) && (rcv->flags & MS_TCP_SIDE_F_SEQ_KNOWN)) {
		/* Acknowledges data the receiver never sent (a window of slack). */
		if (ms_seq_after(p->ack, rcv->end + snd_window))
			return 0;
		/* Far behind anything still unacknowledged. */
		if (ms_seq_before(p->ack, rcv->end - 2 * snd_window))
			return 0;
	}
	return 1;
}

/* RFC 5961 idea: a RST must sit within a window of the sender's position. */
static __always_inline int ms_tcp_rst_acceptable(const struct ms_session *s,
						 const struct ms_tcp_side *snd,
						 const struct ms_tcp_side *rcv,
						 const struct ms_tcp_packet *p, int from_initiator)
{
	if (!(snd->flags & MS_TCP_SIDE_F_SEQ_KNOWN)) {
		/*
		 * The responder never spoke: in SYN_SENT its RST must acknowledge
		 * the SYN (RFC 793); otherwise (a picked-up session) there is
		 * nothing to check against.
		 */
		if (!from_initiator && s->tcp_state == MS_TCP_SYN_SENT)
			return (p->flags & MS_TCP_ACK) && p->ack == rcv->end;
		return 1;
	}
	__u32 window = ms_tcp_clamp_window(rcv->max_win);
	return !ms_seq_before(p->seq, snd->end - window) && !ms_seq_after(p->seq, snd->end + window);
}

/* The state after the FIN facts changed; `state` while nobody sent a FIN. */
static __always_inline __u8 ms_tcp_closing_state(const struct ms_session *s, __u8 state)
{
	const struct ms_tcp_side *initiator = &s->tcp[0];
	const struct ms_tcp_side *responder = &s->tcp[1];
	int initiator_fin = (initiator->flags & MS_TCP_SIDE_F_FIN) != 0;
	int responder_fin = (responder->flags & MS_TCP_SIDE_F_FIN) != 0;
	int initiator_fin_acked = (responder->flags & MS_TCP_SIDE_F_ACKED_PEER_FIN) != 0;
	int responder_fin_acked = (initiator->flags & MS_TCP_SIDE_F_ACKED_PEER_FIN) != 0;

	if (!initiator_fin && !responder_fin)
		return state;
	if (initiator_fin && !responder_fin)
		return initiator_fin_acked ? MS_TCP_FIN_WAIT2 : MS_TCP_FIN_WAIT1;
	if (!initiator_fin)
		return MS_TCP_CLOSE_WAIT;
	if (initiator_fin_acked && responder_fin_acked)
		return MS_TCP_TIME_WAIT;
	if (s->flags & MS_SESSION_F_RESPONDER_CLOSED_FIRST)
		return responder_fin_acked ? MS_TCP_LAST_ACK : MS_TCP_CLOSING;
	/* The initiator closed first and has the responder's FIN: it waits. */
	return initiator_fin_acked ? MS_TCP_TIME_WAIT : MS_TCP_CLOSING;
}

static __always_inline __u32 ms_tcp_advance_syn(struct ms_session *s, struct ms_tcp_side *snd,
						struct ms_tcp_side *rcv,
						const struct ms_tcp_packet *p, int from_initiator)
{
	__u8 state = s->tcp_state;
	if (state == MS_TCP_TIME_WAIT || state == MS_TCP_CLOSE)
		return MS_TCP_RESTART;

	if (p->flags & MS_TCP_ACK) { /* SYN-ACK */
		if (from_initiator && !(s->flags & MS_SESSION_F_SIMULTANEOUS_OPEN))
			return MS_REASON_DROP_INVALID_TCP_STATE; /* only a responder answers a SYN */
		if (state != MS_TCP_SYN_SENT && state != MS_TCP_SYN_RECV)
			return MS_CONTINUE; /* retransmission: our ACK of it was lost */
		/* It must acknowledge the SYN we saw (RFC 793: ISN + 1). */
		if ((rcv->flags & MS_TCP_SIDE_F_SEQ_KNOWN) &&
		    (ms_seq_after(p->ack, rcv->end) ||
		     ms_seq_before(p->ack, rcv->end - MS_TCP_MIN_WINDOW)))
			return MS_REASON_DROP_INVALID_SEQ;
		ms_tcp_side_init_from_syn(snd, p);
		rcv->max_end = p->ack + p->window;
		rcv->flags |= MS_TCP_SIDE_F_MAX_END_KNOWN;
		s->tcp_state = MS_TCP_SYN_RECV;
		return MS_CONTINUE;
	}

	/* A bare SYN. */
	if (state == MS_TCP_SYN_SENT) {
		if (from_initiator) {
			ms_tcp_side_init_from_syn(snd, p); /* retransmitted (or re-chosen ISN) */
		} else {
			ms_tcp_side_init_from_syn(snd, p); /* simultaneous open */
			s->flags |= MS_SESSION_F_SIMULTANEOUS_OPEN;
			s->tcp_state = MS_TCP_SYN_RECV;
		}
	}
	/*
	 * Otherwise a retransmitted SYN, or a SYN in a synchronized state that
	 * the receiver answers with a challenge ACK (RFC 5961): harmless.
	 */
	return MS_CONTINUE;
}

/*
 * One segment of a tracked connection: returns MS_CONTINUE (allowed, the
 * session is updated), a drop reason, or MS_TCP_RESTART.
 */
static __always_inline __u32 ms_tcp_advance(struct ms_session *s, const struct ms_tcp_packet *p,
					    int from_initiator)
{
	struct ms_tcp_side *snd = from_initiator ? &s->tcp[0] : &s->tcp[1];
	struct ms_tcp_side *rcv = from_initiator ? &s->tcp[1] : &s->tcp[0];
	__u8 state = s->tcp_state;

	if (ms_tcp_flags_invalid(p->flags))
		return MS_REASON_DROP_INVALID_TCP_STATE;
	if (p->flags & MS_TCP_SYN)
		return ms_tcp_advance_syn(s, snd, rcv, p, from_initiator);

	if (state == MS_TCP_CLOSE)
		return MS_CONTINUE; /* stragglers after a reset: in flight, harmless */

	if (p->flags & MS_TCP_RST) {
		if (!ms_tcp_rst_acceptable(s, snd, rcv, p, from_initiator))
			return MS_REASON_DROP_INVALID_RST;
		s->tcp_state = MS_TCP_CLOSE;
		return MS_CONTINUE;
	}

	/* ACK, data, FIN. Before the responder's SYN-ACK nobody may send them. */
	if (state == MS_TCP_SYN_SENT)
		return MS_REASON_DROP_INVALID_TCP_STATE;
	if (!ms_tcp_in_window(snd, rcv, p))
		return MS_REASON_DROP_INVALID_SEQ;

	__u32 end = ms_tcp_segment_end(p);
	__u64 window = (__u64)p->window << ms_tcp_window_scale(snd, rcv);
	if (!(snd->flags & MS_TCP_SIDE_F_SEQ_KNOWN) || ms_seq_after(end, snd->end)) {
		snd->end = end;
		snd->flags |= MS_TCP_SIDE_F_SEQ_KNOWN;
	}
	if (window > snd->max_win)
		snd->max_win = ms_tcp_clamp_window(window);
	/* The acknowledgement grants the receiver room up to ack + window. */
	__u32 granted = p->ack + (__u32)ms_tcp_clamp_window(window);
	if (!(rcv->flags & MS_TCP_SIDE_F_MAX_END_KNOWN) || ms_seq_after(granted, rcv->max_end)) {
		rcv->max_end = granted;
		rcv->flags |= MS_TCP_SIDE_F_MAX_END_KNOWN;
	}
	if ((rcv->flags & MS_TCP_SIDE_F_FIN) && !ms_seq_before(p->ack, rcv->end))
		snd->flags |= MS_TCP_SIDE_F_ACKED_PEER_FIN;
	if (p->flags & MS_TCP_FIN) {
		if (!((snd->flags | rcv->flags) & MS_TCP_SIDE_F_FIN) && !from_initiator)
			s->flags |= MS_SESSION_F_RESPONDER_CLOSED_FIRST;
		snd->flags |= MS_TCP_SIDE_F_FIN;
	}

	/* The handshake completes with the initiator's ACK (either's, if simultaneous). */
	if (state == MS_TCP_SYN_RECV &&
	    (from_initiator || (s->flags & MS_SESSION_F_SIMULTANEOUS_OPEN)))
		state = MS_TCP_ESTABLISHED;
	s->tcp_state = ms_tcp_closing_state(s, state);
	return MS_CONTINUE;
}

#endif /* MICROSEG_BPF_TCP_STATE_H */
