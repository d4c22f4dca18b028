//! Classification: the file's rules in order, then the built-in rules, then the fallbacks; the
//! first match wins. A rule that loosens the gate (`pass`, `auto_approve`) matches an
//! environment only by what the command reaches (`matching.rs`).

use std::path::Path;

use super::matching::{Context, LazyEnv};
use super::schema::{Action, Rule, ToolName};
use super::verdict::{Decision, EnvMatch, Verdict};
use super::{builtin, glob, Policy};
use crate::argv::Invocation;
use crate::tool::Tool;

impl Policy {
    /// Classifies one invocation.
    pub fn classify(&self, tool: Tool, inv: &Invocation, ctx: &Context<'_>) -> Verdict {
        let mut env = LazyEnv::new(&self.file.environments, tool, inv, ctx);
        let verdict = self.match_from(0, tool, inv, &mut env, None);
        escalate_for_environment(tool, verdict)
    }

    /// The server's classification: as [`Policy::classify`], except that an `auto_approve`
    /// rule matches only when its environment matches by what the command reaches and
    /// `conditions` (its own: agents, humans, changes) hold; otherwise the following rules
    /// decide. A `Gate` verdict naming an `auto_approve` rule means: approve without a human.
    pub fn classify_on_server(
        &self,
        tool: Tool,
        inv: &Invocation,
        ctx: &Context<'_>,
        conditions: &dyn Fn(&Rule) -> bool,
    ) -> Verdict {
        let mut env = LazyEnv::new(&self.file.environments, tool, inv, ctx);
        self.match_from(0, tool, inv, &mut env, Some(conditions))
    }

    /// The environment an invocation targets (for `explain` and the gated path).
    pub fn environment(&self, tool: Tool, inv: &Invocation, ctx: &Context<'_>) -> Option<EnvMatch> {
        LazyEnv::new(&self.file.environments, tool, inv, ctx).get()
    }

    /// The verdict of the file's rules from `start` on, then the built-in rules, then the
    /// fallbacks. The first match wins.
    pub(super) fn match_from(
        &self,
        start: usize,
        tool: Tool,
        inv: &Invocation,
        env: &mut LazyEnv<'_>,
        auto: Option<&dyn Fn(&Rule) -> bool>,
    ) -> Verdict {
        let path = inv.path_string();
        // User rules may name a plugin explicitly (`subcommands = ["foo"]`), but only when the
        // reading is certain.
        if inv.uncertain.is_empty() {
            for (i, rule) in self.file.rules.iter().enumerate().skip(start) {
                if !rule_applies(rule, tool, inv, &path) {
                    continue;
                }
                if rule.action == Action::AutoApprove {
                    // An auto_approve rule only narrows. On the shim it decides nothing (the
                    // server approves, or not); on the server it approves without a human only
                    // what the rules after it would gate, when the environment matches by what
                    // the command reaches and every condition holds.
                    let Some(conditions) = auto else { continue };
                    let reached = if rule.environments.is_empty() {
                        Some(env.trusted())
                    } else {
                        env.trusted()
                            .filter(|e| rule.environments.contains(&e.name))
                            .map(Some)
                    };
                    let Some(environment) = reached.filter(|_| conditions(rule)) else {
                        continue;
                    };
                    let rest = self.match_from(i + 1, tool, inv, env, auto);
                    let Verdict::Gate(gated) = rest else {
                        return rest;
                    };
                    return Verdict::Gate(Decision {
                        reason: format!(
                            "`{tool} {path}` matched rule {:?} (auto-approval)",
                            rule.name
                        ),
                        rule: rule.name.clone(),
                        environment: environment.or(gated.environment),
                    });
                }
                let loosens = rule.action == Action::Pass
                    && (!rule.environments.is_empty() || !rule.flags.is_empty());
                if loosens && tool == Tool::Kubectl && kuberc_active(inv, env.ctx) {
                    // A kuberc can add flags (even --context, or --raw) that the reading
                    // cannot see: a rule that loosens the gate does not match.
                    continue;
                }
                let environment = if rule.environments.is_empty() {
                    None
                } else if rule.action == Action::Pass {
                    // Loosening: only what the command reaches counts. When resolving it costs
                    // a kubectl run and the rules after this one pass the command anyway, the
                    // verdict is theirs, without resolving.
                    if !env.trusted_known() {
                        let rest = self.match_from(i + 1, tool, inv, env, auto);
                        if matches!(rest, Verdict::Pass(_)) {
                            return rest;
                        }
                        return match env.trusted() {
                            Some(e) if rule.environments.contains(&e.name) => {
                                pass(rule, tool, &path, Some(e))
                            }
                            _ => rest,
                        };
                    }
                    match env.trusted() {
                        Some(e) if rule.environments.contains(&e.name) => Some(e),
                        _ => continue,
                    }
                } else {
                    match env.get() {
                        Some(e) if rule.environments.contains(&e.name) => Some(e),
                        _ => continue,
                    }
                };
                return Verdict::new(
                    rule.action,
                    Decision {
                        reason: format!("`{tool} {path}` matched rule {:?}", rule.name),
                        rule: rule.name.clone(),
                        environment,
                    },
                );
            }
        }
        if !inv.known_subcommand || !inv.uncertain.is_empty() {
            let why = if inv.uncertain.is_empty() {
                format!("`{tool} {path}` is not a subcommand hitl-gate knows (a plugin?)")
            } else {
                inv.uncertain.join("; ")
            };
            return Verdict::new(
                self.file.defaults.unknown_subcommand,
                Decision {
                    rule: builtin::UNKNOWN.into(),
                    environment: env.get(),
                    reason: why,
                },
            );
        }
        if self.file.defaults.builtin_rules {
            for rule in builtin::RULES {
                if rule.tools.contains(&tool) && rule.matches(inv, &path) {
                    return Verdict::new(
                        rule.action,
                        Decision {
                            rule: rule.name.into(),
                            environment: None,
                            reason: format!("`{tool} {path}` matched {}", rule.name),
                        },
                    );
                }
            }
        }
        Verdict::Gate(Decision {
            rule: builtin::UNLISTED.into(),
            environment: env.get(),
            reason: format!("`{tool} {path}` is on no rule's list; unlisted commands are gated"),
        })
    }
}

/// The pass verdict of a loosening rule that matched `env`.
fn pass(rule: &Rule, tool: Tool, path: &str, env: Option<EnvMatch>) -> Verdict {
    Verdict::Pass(Decision {
        reason: format!("`{tool} {path}` matched rule {:?}", rule.name),
        rule: rule.name.clone(),
        environment: env,
    })
}

/// Whether kubectl will read a kuberc for this command: `--kuberc`, `KUBERC` naming a file, or
/// `~/.kube/kuberc` existing, unless `KUBERC=off` or `KUBECTL_KUBERC=false`.
fn kuberc_active(inv: &Invocation, ctx: &Context<'_>) -> bool {
    if inv.has_flag(&["--kuberc"]) {
        return true;
    }
    if (ctx.env)("KUBECTL_KUBERC").as_deref() == Some("false") {
        return false;
    }
    match (ctx.env)("KUBERC") {
        Some(v) if v == "off" => false,
        Some(v) if !v.is_empty() => true,
        _ => (ctx.env)("HOME").is_some_and(|h| Path::new(&h).join(".kube/kuberc").exists()),
    }
}

fn rule_applies(rule: &Rule, tool: Tool, inv: &Invocation, path: &str) -> bool {
    let tool_ok = rule.tools.is_empty()
        || rule.tools.iter().any(|t| {
            matches!(
                (t, tool),
                (ToolName::Terraform, Tool::Terraform)
                    | (ToolName::Tofu, Tool::Tofu)
                    | (ToolName::Kubectl, Tool::Kubectl)
                    | (ToolName::Helm, Tool::Helm)
            )
        });
    let sub_ok = rule.subcommands.is_empty()
        || rule
            .subcommands
            .iter()
            .any(|p| glob::matches(p, path, None));
    // `--raw` sends a raw request and ignores --dry-run: a dry-run condition never matches it.
    if rule.flags.contains_key("--dry-run") && inv.has_flag(&["--raw"]) {
        return false;
    }
    let flags_ok = rule.flags.iter().all(|(flag, accepted)| {
        inv.flags
            .iter()
            .rev()
            .find(|(n, _)| n == flag)
            .is_some_and(|(_, v)| {
                accepted.iter().any(|a| match v {
                    Some(v) => glob::matches(a, v, None),
                    None => a == "*",
                })
            })
    });
    tool_ok && sub_ok && flags_ok
}

/// Environment variables that make the real tool run something other than what argv says.
/// Their presence can only make the verdict stricter: a `pass` becomes a `gate`.
fn escalate_for_environment(tool: Tool, verdict: Verdict) -> Verdict {
    let Verdict::Pass(d) = verdict else {
        return verdict;
    };
    // terraform inserts TF_CLI_ARGS after the subcommand, or in front of everything when argv
    // has none: `TF_CLI_ARGS="destroy -auto-approve" terraform` destroys.
    if tool.is_terraform_like() {
        if let Some(name) = crate::argv::terraform::cli_args_var(std::env::vars_os()) {
            return Verdict::Gate(Decision {
                rule: "environment:TF_CLI_ARGS".into(),
                environment: d.environment,
                reason: format!(
                    "{name} is set and can change what terraform runs; the command is gated"
                ),
            });
        }
    }
    Verdict::Pass(d)
}
