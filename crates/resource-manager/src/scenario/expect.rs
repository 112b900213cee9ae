//! Final expectations of a scenario: session states and target contents.

use super::format::ScenarioFile;
use super::runner::{StepError, World};
use super::ScenarioError;

impl World<'_> {
    pub(super) fn check_final(&mut self, file: &ScenarioFile) -> Result<(), ScenarioError> {
        let sessions = match self.rm.list_sessions() {
            Ok(s) => s,
            Err(e) => {
                self.report
                    .failures
                    .push(format!("listing sessions failed: {e}"));
                return Ok(());
            }
        };
        for x in &file.expects {
            let line = self.src.line(x.span().start);
            let e = x.get_ref();
            let id = e.session.get_ref();
            let want = e.state.get_ref();
            let valid = ["active", "completed", "resumed", "terminated"].contains(&want.as_str())
                || (want.starts_with("terminated(") && want.ends_with(')'));
            if !valid {
                return Err(self.src.err(
                    &e.state,
                    "state",
                    format!("`{want}` is not active, completed, resumed, terminated or terminated(<reason>)"),
                ));
            }
            let got = sessions
                .iter()
                .find(|s| s.id.as_str() == id)
                .map(|s| s.state);
            let ok = match got {
                Some(st) if want.as_str() == "terminated" => st.name() == "terminated",
                Some(st) => st.to_string() == *want,
                None => false,
            };
            self.report.log.push(format!(
                "line {line}: session {id} is {}",
                got.map_or("unknown".into(), |s| s.to_string())
            ));
            if !ok {
                self.report.failures.push(format!(
                    "line {line}: session {id}: expected {want}, got {}",
                    got.map_or("no such session".into(), |s| s.to_string())
                ));
            }
        }
        for x in &file.targets {
            let line = self.src.line(x.span().start);
            let t = x.get_ref();
            let span = x.span();
            let (sub, vol) = self.split_volume(span.clone(), "volume", t.volume.get_ref())?;
            let (tracks, want, what) = match (&t.session, &t.crc32c, &t.tracks) {
                (Some(s), None, None) => {
                    let img = self
                        .images
                        .get(s.get_ref())
                        .and_then(|v| v.iter().find(|i| i.subsystem == sub && i.target == vol));
                    let Some(img) = img else {
                        return Err(self.src.err(
                            s,
                            "session",
                            format!(
                                "session {} was not started with target {sub}/{vol}",
                                s.get_ref()
                            ),
                        ));
                    };
                    (
                        img.extents.clone(),
                        img.crc,
                        format!("the time-zero image of session {}", s.get_ref()),
                    )
                }
                (None, Some(c), Some(tr)) => {
                    let g = self.ports[&sub]
                        .inner
                        .subsystem()
                        .geometry(&vol)
                        .map_err(|e| ScenarioError::Setup {
                            path: self.src.path.to_string(),
                            message: e.to_string(),
                        })?;
                    let set = g
                        .parse_extent_set(tr.get_ref())
                        .map_err(|e| self.src.err(tr, "tracks", e.to_string()))?;
                    let hex = c.get_ref().trim_start_matches("0x");
                    let want = u32::from_str_radix(hex, 16).map_err(|_| {
                        self.src.err(
                            c,
                            "crc32c",
                            format!("`{}` is not 0x + 8 hex digits", c.get_ref()),
                        )
                    })?;
                    (set, want, format!("crc32c {:#010x}", want))
                }
                _ => {
                    return Err(self.src.field_err(
                        span,
                        "volume",
                        "give either `session` or both `tracks` and `crc32c`",
                    ))
                }
            };
            match self.checksum(&sub, &vol, &tracks) {
                Ok(got) if got == want => self
                    .report
                    .log
                    .push(format!("line {line}: {sub}/{vol} holds {what}")),
                Ok(got) => self.report.failures.push(format!(
                    "line {line}: {sub}/{vol}: expected {what} ({want:#010x}), got crc32c {got:#010x}"
                )),
                Err(StepError::Failed(m)) | Err(StepError::Invalid(ScenarioError::Setup { message: m, .. })) => {
                    self.report.failures.push(format!("line {line}: {sub}/{vol}: {m}"))
                }
                Err(StepError::Invalid(e)) => return Err(e),
            }
        }
        Ok(())
    }
}
