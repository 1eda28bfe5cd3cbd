//! The client side of the transaction exchanges: answering XAuth (from the
//! profile or by asking the user), then Mode Config (pull or push).

use std::time::Instant;

use zeroize::Zeroizing;

use crate::codec::{AttrPayload, Attribute, cfg_attr};

use super::super::exchange::Pending;
use super::super::sa_ctx::IsakmpSa;
use super::super::{Error, Event};
use super::attrs::{bytes, field_of, kind_of, mode_config_request, parse_mode_config, text};
use super::{
    AfterAck, Credentials, CredentialsRequest, ModeConfigInfo, ModeConfigMode, Round,
    SETUP_PATIENCE, Setup, Step, Transaction, TxMsg, XAuthConfig, XAuthField, answer_transaction,
    cfg_identifier, seal_transaction,
};

impl Transaction {
    /// Client: XAuth done (or not used): Mode Config, then quick mode.
    pub(super) fn after_xauth(&mut self, ctx: &mut IsakmpSa, now: Instant) -> Step {
        match ctx.config().mode_config {
            ModeConfigMode::Off => {
                self.setup = Setup::Done;
                Step::Done(ctx.config().children.clone())
            }
            ModeConfigMode::Push => {
                self.setup = Setup::AwaitModeConfigSet {
                    deadline: super::super::now_plus(now, SETUP_PATIENCE),
                };
                Step::Wait
            }
            ModeConfigMode::Pull => {
                let mid = ctx.new_message_id();
                let attr = AttrPayload {
                    cfg_type: cfg_attr::REQUEST,
                    identifier: cfg_identifier(ctx),
                    attributes: mode_config_request(
                        ctx.config().requested_address,
                        ctx.config().request_ipv6,
                    ),
                };
                let iv = ctx.exchange_iv(mid);
                match seal_transaction(ctx, mid, attr, &iv) {
                    Ok((d, last)) => {
                        let pending = Pending::new(d.clone(), now, &ctx.config().retransmit);
                        self.setup = Setup::AwaitModeConfigReply {
                            mid,
                            iv: last,
                            pending,
                        };
                        ctx.send(d);
                        Step::Wait
                    }
                    Err(e) => self.fail(e),
                }
            }
        }
    }

    /// Client: Mode Config result in hand: report it and start quick mode with
    /// the virtual IP as our selector and the split networks as the peer's.
    fn mode_config_done(&mut self, ctx: &mut IsakmpSa, info: ModeConfigInfo) -> Step {
        self.setup = Setup::Done;
        if self.renewal {
            // A renewal only re-establishes the address on the new ISAKMP SA; the
            // ESP SAs are moved over by the SA it renews.
            self.mode_config = Some(info);
            return Step::Done(Vec::new());
        }
        ctx.event(Event::ModeConfig(info.clone()));
        if info.address.is_none() && info.address6.is_none() {
            return self.fail(Error::Local(
                "the gateway assigned no virtual IP address (Mode Config)".into(),
            ));
        }
        let children = info.children(&ctx.config().remote_networks);
        self.mode_config = Some(info);
        Step::Done(children)
    }

    pub(super) fn client_transaction(
        &mut self,
        ctx: &mut IsakmpSa,
        now: Instant,
        msg: TxMsg<'_>,
        attr: AttrPayload,
    ) -> Result<Step, Error> {
        let is_xauth = attr
            .attributes
            .iter()
            .any(|a| (16520..=16529).contains(&a.kind));
        match (attr.cfg_type, is_xauth) {
            (cfg_attr::REQUEST, true) => {
                let rounds = match &self.setup {
                    Setup::AwaitXAuth { .. } => 0,
                    Setup::AwaitXAuthStatus { rounds, .. } => *rounds,
                    _ => {
                        ctx.dropped();
                        return Ok(Step::Wait);
                    }
                };
                self.on_xauth_request(ctx, now, msg, attr, rounds)
                    .map(|()| Step::Wait)
            }
            (cfg_attr::SET, true) => {
                if !matches!(
                    self.setup,
                    Setup::AwaitXAuthStatus { .. } | Setup::AwaitXAuth { .. }
                ) {
                    ctx.dropped();
                    return Ok(Step::Wait);
                }
                self.on_xauth_status(ctx, now, msg, attr)
            }
            (cfg_attr::REPLY, false) => {
                let Setup::AwaitModeConfigReply { mid: m, .. } = &self.setup else {
                    ctx.dropped();
                    return Ok(Step::Wait);
                };
                if *m != msg.mid {
                    ctx.dropped();
                    return Ok(Step::Wait);
                }
                let info = parse_mode_config(&attr.attributes);
                Ok(self.mode_config_done(ctx, info))
            }
            (cfg_attr::SET, false) => {
                if !matches!(
                    self.setup,
                    Setup::AwaitModeConfigSet { .. } | Setup::AwaitModeConfigReply { .. }
                ) {
                    ctx.dropped();
                    return Ok(Step::Wait);
                }
                let info = parse_mode_config(&attr.attributes);
                // ACK names the attributes we accept.
                let acked: Vec<Attribute> = attr
                    .attributes
                    .iter()
                    .map(|a| Attribute::variable(a.kind, Vec::new()))
                    .collect();
                let ack = AttrPayload {
                    cfg_type: cfg_attr::ACK,
                    identifier: attr.identifier,
                    attributes: acked,
                };
                answer_transaction(ctx, &msg, ack)?;
                // Quick modes follow the ACK after ACK_SETTLE, like after XAuth.
                Ok(match self.mode_config_done(ctx, info) {
                    Step::Done(children) if !children.is_empty() => {
                        self.setup = Setup::AckSettle {
                            until: super::super::now_plus(now, self.ack_settle(ctx)),
                            next: AfterAck::Children(children),
                        };
                        Step::Wait
                    }
                    other => other,
                })
            }
            _ => {
                ctx.dropped();
                Ok(Step::Wait)
            }
        }
    }

    /// The gateway's SET with the XAuth status: ACK it; on success Mode Config next.
    fn on_xauth_status(
        &mut self,
        ctx: &mut IsakmpSa,
        now: Instant,
        msg: TxMsg<'_>,
        attr: AttrPayload,
    ) -> Result<Step, Error> {
        let status = attr
            .attributes
            .iter()
            .find(|a| a.kind == cfg_attr::XAUTH_STATUS)
            .and_then(Attribute::as_u64);
        let message = attr
            .attributes
            .iter()
            .find(|a| a.kind == cfg_attr::XAUTH_MESSAGE)
            .map(|a| text(bytes(a)))
            .filter(|s| !s.is_empty());
        let ack = AttrPayload {
            cfg_type: cfg_attr::ACK,
            identifier: attr.identifier,
            attributes: vec![Attribute::basic(
                cfg_attr::XAUTH_STATUS,
                status.unwrap_or(0) as u16,
            )],
        };
        answer_transaction(ctx, &msg, ack)?;
        if status == Some(cfg_attr::XAUTH_STATUS_OK as u64) {
            ctx.event(Event::XAuthSucceeded);
            if ctx.config().mode_config == ModeConfigMode::Push {
                // The gateway speaks next (its SET proves it has the ACK).
                return Ok(self.after_xauth(ctx, now));
            }
            self.setup = Setup::AckSettle {
                until: super::super::now_plus(now, self.ack_settle(ctx)),
                next: AfterAck::ModeConfig,
            };
            Ok(Step::Wait)
        } else {
            Err(Error::XAuthFailed(
                message.unwrap_or_else(|| "the gateway refused the login".into()),
            ))
        }
    }

    fn on_xauth_request(
        &mut self,
        ctx: &mut IsakmpSa,
        now: Instant,
        msg: TxMsg<'_>,
        attr: AttrPayload,
        rounds: u32,
    ) -> Result<(), Error> {
        let asked: Vec<u16> = attr.attributes.iter().map(|a| a.kind).collect();
        let message = attr
            .attributes
            .iter()
            .filter(|a| a.kind == cfg_attr::XAUTH_MESSAGE || a.kind == cfg_attr::XAUTH_CHALLENGE)
            .map(|a| text(bytes(a)))
            .find(|s| !s.is_empty());
        let fields: Vec<XAuthField> = asked.iter().filter_map(|k| field_of(*k)).collect();
        self.cfg_request_identifier = attr.identifier;
        let cfg = ctx.config().xauth.clone();
        // The first round answers itself when the profile holds everything asked.
        let automatic = rounds == 0
            && cfg.as_ref().is_some_and(|c| {
                fields.iter().all(|f| match f {
                    XAuthField::UserName => true,
                    XAuthField::Password => c.password.is_some(),
                    _ => false,
                })
            });
        if !automatic {
            self.setup = Setup::Prompting {
                mid: msg.mid,
                iv: msg.iv,
                request: msg.data.to_vec(),
                asked,
                rounds,
            };
            ctx.event(Event::CredentialsRequired(CredentialsRequest {
                fields,
                message,
            }));
            return Ok(());
        }
        let c = cfg.unwrap_or(XAuthConfig {
            username: String::new(),
            password: None,
        });
        let mut values = Vec::new();
        for f in &fields {
            match f {
                XAuthField::UserName => values.push((*f, Zeroizing::new(c.username.clone()))),
                XAuthField::Password => values.push((
                    *f,
                    c.password
                        .clone()
                        .unwrap_or_else(|| Zeroizing::new(String::new())),
                )),
                _ => {}
            }
        }
        let round = Round {
            asked: &asked,
            rounds,
        };
        self.send_xauth_reply(ctx, now, &msg, &round, Credentials { values })
    }

    fn send_xauth_reply(
        &mut self,
        ctx: &mut IsakmpSa,
        now: Instant,
        msg: &TxMsg<'_>,
        round: &Round<'_>,
        creds: Credentials,
    ) -> Result<(), Error> {
        let mut attributes = Vec::new();
        for k in round.asked {
            if *k == cfg_attr::XAUTH_TYPE {
                attributes.push(Attribute::basic(
                    cfg_attr::XAUTH_TYPE,
                    cfg_attr::XAUTH_TYPE_GENERIC,
                ));
                continue;
            }
            let Some(f) = field_of(*k) else { continue };
            let value = creds
                .values
                .iter()
                .find(|(g, _)| *g == f)
                .map(|(_, v)| v.as_bytes().to_vec());
            let value = match (f, value) {
                (_, Some(v)) => v,
                (XAuthField::UserName, None) => ctx
                    .config()
                    .xauth
                    .as_ref()
                    .map(|c| c.username.clone().into_bytes())
                    .unwrap_or_default(),
                (_, None) => Vec::new(),
            };
            attributes.push(Attribute::variable(kind_of(f), value));
        }
        let reply = AttrPayload {
            cfg_type: cfg_attr::REPLY,
            identifier: self.cfg_request_identifier,
            attributes,
        };
        // The reply may hold a password: it is not kept for retransmission beyond the SA.
        answer_transaction(ctx, msg, reply)?;
        self.setup = Setup::AwaitXAuthStatus {
            deadline: super::super::now_plus(now, SETUP_PATIENCE),
            rounds: round.rounds + 1,
        };
        Ok(())
    }

    /// Answers the pending XAuth round (after [`Event::CredentialsRequired`]).
    /// `Ok(Step::Failed)` when the answer could not be sent.
    pub fn submit_credentials(
        &mut self,
        ctx: &mut IsakmpSa,
        now: Instant,
        creds: Credentials,
    ) -> Result<Step, Error> {
        let Setup::Prompting {
            mid,
            iv,
            request,
            asked,
            rounds,
        } = std::mem::replace(&mut self.setup, Setup::NotStarted)
        else {
            return Err(Error::Local(
                "no XAuth question is waiting for an answer".into(),
            ));
        };
        let msg = TxMsg {
            data: &request,
            mid,
            iv,
        };
        let round = Round {
            asked: &asked,
            rounds,
        };
        Ok(match self.send_xauth_reply(ctx, now, &msg, &round, creds) {
            Ok(()) => Step::Wait,
            Err(e) => Step::Failed(e),
        })
    }
}
