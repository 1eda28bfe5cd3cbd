//! The gateway side of the transaction exchanges (our responder, used by the
//! tests and the lab): XAuth rounds and status, Mode Config pull or push.

use std::time::Instant;

use crate::codec::{AttrPayload, Attribute, cfg_attr};
use crate::crypto;

use super::super::Error;
use super::super::exchange::Pending;
use super::super::sa_ctx::IsakmpSa;
use super::attrs::{bytes, mode_config_attributes};
use super::{
    ModeConfigMode, Setup, Step, Transaction, TxMsg, answer_transaction, cfg_identifier,
    seal_transaction,
};

impl Transaction {
    pub(super) fn server_xauth_round(
        &mut self,
        ctx: &mut IsakmpSa,
        now: Instant,
        round: u32,
    ) -> Step {
        let mut attributes = vec![Attribute::basic(
            cfg_attr::XAUTH_TYPE,
            cfg_attr::XAUTH_TYPE_GENERIC,
        )];
        if round == 0 {
            attributes.push(Attribute::variable(cfg_attr::XAUTH_USER_NAME, Vec::new()));
            attributes.push(Attribute::variable(
                cfg_attr::XAUTH_USER_PASSWORD,
                Vec::new(),
            ));
        } else {
            attributes.push(Attribute::variable(
                cfg_attr::XAUTH_MESSAGE,
                b"Enter your one-time passcode".to_vec(),
            ));
            attributes.push(Attribute::variable(cfg_attr::XAUTH_PASSCODE, Vec::new()));
        }
        let attr = AttrPayload {
            cfg_type: cfg_attr::REQUEST,
            identifier: cfg_identifier(ctx),
            attributes,
        };
        self.server_send(ctx, now, attr, |mid, iv, pending| Setup::ServerXAuth {
            mid,
            iv,
            pending,
            round,
            status_sent: None,
        })
    }

    fn server_status(&mut self, ctx: &mut IsakmpSa, now: Instant, ok: bool) -> Step {
        let mut attributes = vec![Attribute::basic(cfg_attr::XAUTH_STATUS, u16::from(ok))];
        if !ok {
            attributes.push(Attribute::variable(
                cfg_attr::XAUTH_MESSAGE,
                b"Login incorrect".to_vec(),
            ));
        }
        let attr = AttrPayload {
            cfg_type: cfg_attr::SET,
            identifier: cfg_identifier(ctx),
            attributes,
        };
        self.server_send(ctx, now, attr, |mid, iv, pending| Setup::ServerXAuth {
            mid,
            iv,
            pending,
            round: 0,
            status_sent: Some(ok),
        })
    }

    fn server_send(
        &mut self,
        ctx: &mut IsakmpSa,
        now: Instant,
        attr: AttrPayload,
        state: impl FnOnce(u32, Vec<u8>, Pending) -> Setup,
    ) -> Step {
        let mid = ctx.new_message_id();
        let iv = ctx.exchange_iv(mid);
        match seal_transaction(ctx, mid, attr, &iv) {
            Ok((d, last)) => {
                let pending = Pending::new(d.clone(), now, &ctx.config().retransmit);
                self.setup = state(mid, last, pending);
                ctx.send(d);
                Step::Wait
            }
            Err(e) => self.fail(e),
        }
    }

    pub(super) fn server_after_xauth(&mut self, ctx: &mut IsakmpSa, now: Instant) -> Step {
        let cfg = ctx.config();
        match (cfg.mode_config, cfg.mode_config_server.clone()) {
            (ModeConfigMode::Push, Some(info)) => {
                let attr = AttrPayload {
                    cfg_type: cfg_attr::SET,
                    identifier: cfg_identifier(ctx),
                    attributes: mode_config_attributes(&info),
                };
                self.server_send(ctx, now, attr, |mid, iv, pending| {
                    Setup::ServerModeConfigSet { mid, iv, pending }
                })
            }
            (ModeConfigMode::Pull, Some(_)) => {
                self.setup = Setup::ServerAwaitModeConfig;
                Step::Wait
            }
            _ => {
                self.setup = Setup::Done;
                Step::Done(Vec::new())
            }
        }
    }

    pub(super) fn server_transaction(
        &mut self,
        ctx: &mut IsakmpSa,
        now: Instant,
        msg: TxMsg<'_>,
        attr: AttrPayload,
    ) -> Result<Step, Error> {
        let setup = std::mem::replace(&mut self.setup, Setup::NotStarted);
        match (setup, attr.cfg_type) {
            (
                Setup::ServerXAuth {
                    mid: m,
                    round,
                    status_sent: None,
                    ..
                },
                cfg_attr::REPLY,
            ) if m == msg.mid => Ok(self.server_check_login(ctx, now, &attr, round)),
            (
                Setup::ServerXAuth {
                    mid: m,
                    status_sent: Some(ok),
                    ..
                },
                cfg_attr::ACK,
            ) if m == msg.mid => {
                if ok {
                    Ok(self.server_after_xauth(ctx, now))
                } else {
                    Err(Error::XAuthFailed("the client's login was refused".into()))
                }
            }
            (Setup::ServerAwaitModeConfig, cfg_attr::REQUEST) => {
                let info = ctx.config().mode_config_server.clone().unwrap_or_default();
                let reply = AttrPayload {
                    cfg_type: cfg_attr::REPLY,
                    identifier: attr.identifier,
                    attributes: mode_config_attributes(&info),
                };
                answer_transaction(ctx, &msg, reply)?;
                self.setup = Setup::Done;
                Ok(Step::Done(Vec::new()))
            }
            (Setup::ServerModeConfigSet { mid: m, .. }, cfg_attr::ACK) if m == msg.mid => {
                self.setup = Setup::Done;
                Ok(Step::Done(Vec::new()))
            }
            (other, _) => {
                self.setup = other;
                ctx.dropped();
                Ok(Step::Wait)
            }
        }
    }

    /// Gateway: the client's XAuth REPLY: another round, or the status.
    fn server_check_login(
        &mut self,
        ctx: &mut IsakmpSa,
        now: Instant,
        attr: &AttrPayload,
        round: u32,
    ) -> Step {
        let Some(server) = ctx.config().xauth_server.clone() else {
            return Step::Wait;
        };
        let get = |k: u16| {
            attr.attributes
                .iter()
                .find(|a| a.kind == k)
                .map(|a| bytes(a).to_vec())
        };
        let ok = if round == 0 {
            get(cfg_attr::XAUTH_USER_NAME).as_deref() == Some(server.username.as_bytes())
                && get(cfg_attr::XAUTH_USER_PASSWORD)
                    .is_some_and(|p| crypto::ct_eq(&p, server.password.as_bytes()))
        } else {
            let want = server
                .passcode
                .as_ref()
                .map(|p| p.as_bytes().to_vec())
                .unwrap_or_default();
            get(cfg_attr::XAUTH_PASSCODE).is_some_and(|p| crypto::ct_eq(&p, &want))
        };
        if ok && round == 0 && server.passcode.is_some() {
            self.server_xauth_round(ctx, now, 1)
        } else {
            self.server_status(ctx, now, ok)
        }
    }
}
