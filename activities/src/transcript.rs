//! Transcript text from words: segments and the formats the REST API, the stored WebVTT and
//! the outgoing webhook render (docs/contracts/events-and-api.md §5.2, §5.3, §6).
//!
//! A segment is a run of consecutive words of one speaker, split after a word ending in
//! `.`, `?`, `!` or `…`, or once it reaches 1000 characters; segments are then sorted by
//! start (Reflector's shape, for the REST API and the stored WebVTT). The conversation view
//! (`reflow process`'s `transcript.txt` / `transcript.vtt`) uses [`utterances`] instead: each
//! speaker's words in their own order, a pause of a second ending an utterance, so speech that
//! overlaps another speaker's stays whole. Names come from the participants (`speaker` →
//! `name`), else `Speaker {n}`.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Longest segment text before a forced split.
pub const MAX_SEGMENT_CHARS: usize = 1000;

/// A recognised word: `text` carries its leading space (`" world."`); times in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Word {
    /// The word with its leading space.
    pub text: String,
    /// Start, seconds from recording start.
    pub start: f64,
    /// End, seconds.
    pub end: f64,
    /// 0-based speaker.
    pub speaker: i64,
}

/// A run of one speaker's words.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Segment {
    /// Trimmed text.
    pub text: String,
    /// Start of the first word.
    pub start: f64,
    /// End of the last word.
    pub end: f64,
    /// Speaker.
    pub speaker: i64,
}

/// A participant as stored on the transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Participant {
    /// Daily participant UUID.
    pub id: String,
    /// Speaker number.
    pub speaker: i64,
    /// Display name.
    pub name: String,
    /// Reflector user id.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Email, if a user set one.
    #[serde(default)]
    pub email: Option<String>,
}

/// A topic as stored on the transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Topic {
    /// Topic id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Summary.
    pub summary: String,
    /// Start, seconds.
    pub timestamp: f64,
    /// Seconds.
    #[serde(default)]
    pub duration: Option<f64>,
    /// The topic's text.
    #[serde(default)]
    pub transcript: String,
    /// Its words, in order.
    #[serde(default)]
    pub words: Vec<Word>,
}

impl Topic {
    /// `last word end − first word start` (0 without words).
    pub fn words_duration(&self) -> f64 {
        match (self.words.first(), self.words.last()) {
            (Some(a), Some(b)) => b.end - a.start,
            _ => 0.0,
        }
    }

    /// The REST shape (§5.3): without words unless `with_words`.
    pub fn to_rest(&self, with_words: bool) -> Value {
        let mut v = json!({
            "id": self.id, "title": self.title, "summary": self.summary,
            "timestamp": self.timestamp, "duration": self.words_duration(),
            "transcript": self.transcript,
            "segments": segments(&self.words).iter().map(|s| json!({"text": s.text, "start": s.start, "speaker": s.speaker})).collect::<Vec<_>>(),
        });
        if with_words {
            v["words"] = json!(self.words);
        }
        v
    }

    /// Runs of consecutive words per speaker (`words-per-speaker`).
    pub fn words_per_speaker(&self) -> Vec<Value> {
        let mut out: Vec<(i64, Vec<&Word>)> = Vec::new();
        for w in &self.words {
            match out.last_mut() {
                Some((s, words)) if *s == w.speaker => words.push(w),
                _ => out.push((w.speaker, vec![w])),
            }
        }
        out.into_iter()
            .map(|(speaker, words)| json!({"speaker": speaker, "words": words}))
            .collect()
    }
}

/// Split words into segments (module docs), sorted by start.
pub fn segments(words: &[Word]) -> Vec<Segment> {
    group(
        words.iter(),
        |s, w| s.speaker == w.speaker,
        |w| w.text.trim_end().ends_with(['.', '?', '!', '…']),
    )
}

/// A pause this long (seconds, end of a word to start of the next) ends an utterance.
pub const UTTERANCE_PAUSE_S: f64 = 1.0;

/// Each speaker's words grouped into utterances (a pause of [`UTTERANCE_PAUSE_S`] or
/// [`MAX_SEGMENT_CHARS`] ends one), ordered by start. Word times are kept as they are.
pub fn utterances(words: &[Word]) -> Vec<Segment> {
    group(
        in_utterance_order(words).into_iter(),
        |s, w| s.speaker == w.speaker && w.start - s.end < UTTERANCE_PAUSE_S,
        |_| false,
    )
}

/// The words in the order of [`utterances`]: each speaker's words stay together until a pause
/// of [`UTTERANCE_PAUSE_S`], and these runs follow each other by start — so speech that
/// overlaps another speaker's is read whole ("Ben: No objection, as long as the fix is
/// merged"), not interleaved word by word.
pub fn in_utterance_order(words: &[Word]) -> Vec<&Word> {
    let mut by_speaker: std::collections::BTreeMap<i64, Vec<&Word>> = Default::default();
    for w in words {
        by_speaker.entry(w.speaker).or_default().push(w);
    }
    let mut runs: Vec<Vec<&Word>> = Vec::new();
    for said in by_speaker.values_mut() {
        said.sort_by(|a, b| a.start.total_cmp(&b.start));
        let mut end = f64::NEG_INFINITY;
        for w in said.iter().copied() {
            match runs.last_mut() {
                Some(run) if run[0].speaker == w.speaker && w.start - end < UTTERANCE_PAUSE_S => {
                    run.push(w)
                }
                _ => runs.push(vec![w]),
            }
            end = end.max(w.end);
        }
    }
    runs.sort_by(|a, b| a[0].start.total_cmp(&b[0].start));
    runs.into_iter().flatten().collect()
}

/// Words in order into segments: a word joins the open segment while `continues` says so and
/// the text is under [`MAX_SEGMENT_CHARS`]; a word for which `closes` holds ends its segment.
/// Texts trimmed, empty ones dropped, sorted by start.
fn group<'a>(
    words: impl Iterator<Item = &'a Word>,
    continues: impl Fn(&Segment, &Word) -> bool,
    closes: impl Fn(&Word) -> bool,
) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    let mut open: Option<Segment> = None;
    for w in words {
        let joins = open
            .as_ref()
            .is_some_and(|s| continues(s, w) && s.text.len() < MAX_SEGMENT_CHARS);
        if !joins {
            out.extend(open.take());
        }
        let s = open.get_or_insert_with(|| Segment {
            text: String::new(),
            start: w.start,
            end: w.end,
            speaker: w.speaker,
        });
        s.text.push_str(&w.text);
        s.end = s.end.max(w.end);
        if closes(w) {
            out.extend(open.take());
        }
    }
    out.extend(open);
    for s in &mut out {
        s.text = s.text.trim().to_owned();
    }
    out.retain(|s| !s.text.is_empty());
    out.sort_by(|a, b| a.start.total_cmp(&b.start));
    out
}

/// The name shown for `speaker`.
pub fn speaker_name(participants: &[Participant], speaker: i64) -> String {
    participants
        .iter()
        .find(|p| p.speaker == speaker)
        .map(|p| p.name.clone())
        .unwrap_or_else(|| format!("Speaker {speaker}"))
}

/// `HH:MM:SS.mmm`.
pub fn vtt_time(seconds: f64) -> String {
    let ms = (seconds.max(0.0) * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// WebVTT of `segments`; each cue's voice is `voice(speaker)`. Names (a Daily display name is
/// whatever the participant typed) and text are escaped ([`vtt_escape`]), so neither can end
/// the voice tag, add markup or start a cue of its own.
pub fn webvtt(segments: &[Segment], voice: impl Fn(i64) -> String) -> String {
    let mut out = String::from("WEBVTT\n");
    for s in segments {
        out.push_str(&format!(
            "\n{} --> {}\n<v {}>{}\n",
            vtt_time(s.start),
            vtt_time(s.end),
            vtt_escape(&voice(s.speaker)),
            vtt_escape(&s.text)
        ));
    }
    out
}

/// `text` as WebVTT cue text (the WebVTT spec, §4.2.2 "cue text"): `&`, `<` and `>` as
/// `&amp;`, `&lt;` and `&gt;` (so a `>` cannot close a `<v …>` tag and `-->` cannot appear),
/// and every line break or other control character as a space (a blank line would end the
/// cue, and a line of its own could be read as a new cue's timing).
pub fn vtt_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The stored `transcript.webvtt` (and the webhook's): voices `Speaker{n}`, no names.
pub fn stored_webvtt(topics: &[Topic]) -> String {
    let words: Vec<Word> = topics
        .iter()
        .flat_map(|t| t.words.iter().cloned())
        .collect();
    webvtt(&segments(&words), |s| format!("Speaker{s}"))
}

/// Why a transcript cannot be rendered.
#[derive(Debug, thiserror::Error)]
#[error("unknown transcript_format {0:?}; use text, text-timestamped, webvtt-named or json")]
pub struct UnknownFormat(pub String);

/// The `transcript` field of `GET /v1/transcripts/{id}` in `format` (§5.2).
pub fn render(
    format: &str,
    topics: &[Topic],
    participants: &[Participant],
) -> Result<Value, UnknownFormat> {
    render_segments(format, &segments(&all_words(topics)), participants)
}

/// `format` of the conversation view ([`utterances`]): what `reflow process` writes.
pub fn render_conversation(
    format: &str,
    topics: &[Topic],
    participants: &[Participant],
) -> Result<Value, UnknownFormat> {
    render_segments(format, &utterances(&all_words(topics)), participants)
}

fn all_words(topics: &[Topic]) -> Vec<Word> {
    topics
        .iter()
        .flat_map(|t| t.words.iter().cloned())
        .collect()
}

fn render_segments(
    format: &str,
    segs: &[Segment],
    participants: &[Participant],
) -> Result<Value, UnknownFormat> {
    let name = |s: i64| speaker_name(participants, s);
    Ok(match format {
        "text" => Value::String(
            segs.iter()
                .map(|s| format!("{}: {}", name(s.speaker), s.text))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        "text-timestamped" => Value::String(
            segs.iter()
                .map(|s| {
                    let secs = s.start.max(0.0) as u64;
                    format!(
                        "[{:02}:{:02}] {}: {}",
                        secs / 60,
                        secs % 60,
                        name(s.speaker),
                        s.text
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        "webvtt-named" => Value::String(webvtt(segs, name)),
        "json" => Value::Array(
            segs.iter()
                .map(|s| {
                    json!({"speaker": s.speaker, "speaker_name": name(s.speaker),
                           "text": s.text, "start": s.start, "end": s.end})
                })
                .collect(),
        ),
        other => return Err(UnknownFormat(other.to_owned())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(text: &str, start: f64, speaker: i64) -> Word {
        Word {
            text: text.into(),
            start,
            end: start + 0.4,
            speaker,
        }
    }

    fn topic(words: Vec<Word>) -> Topic {
        Topic {
            id: "t".into(),
            title: "T".into(),
            summary: "S".into(),
            timestamp: 0.0,
            duration: None,
            transcript: String::new(),
            words,
        }
    }

    #[test]
    fn segments_split_on_speaker_and_sentence_end_and_sort_by_start() {
        let words = vec![
            w(" Hello", 0.5, 0),
            w(" everyone.", 1.0, 0),
            w(" Next", 1.5, 0),
            w(" point", 2.0, 0),
            w(" Hi", 1.8, 1),
            w(" Ana!", 2.2, 1),
        ];
        let s = segments(&words);
        let texts: Vec<(&str, i64)> = s.iter().map(|s| (s.text.as_str(), s.speaker)).collect();
        assert_eq!(
            texts,
            [("Hello everyone.", 0), ("Next point", 0), ("Hi Ana!", 1)]
        );
        assert_eq!((s[0].start, s[0].end), (0.5, 1.4));
    }

    #[test]
    fn utterances_keep_overlapping_speech_whole_and_split_on_pauses() {
        // Chloe talks over Ben: merged by time, their words interleave.
        let words = vec![
            w(" on", 10.0, 2),
            w(" No,", 10.2, 1),
            w(" the", 10.4, 2),
            w(" wait.", 10.6, 1),
            w(" settings", 10.8, 2),
            w(" page.", 11.2, 2),
            // Ben again after a 1.5 s pause: a new utterance.
            w(" Right.", 12.5, 1),
        ];
        let s = utterances(&words);
        let texts: Vec<(&str, i64)> = s.iter().map(|s| (s.text.as_str(), s.speaker)).collect();
        assert_eq!(
            texts,
            [
                ("on the settings page.", 2),
                ("No, wait.", 1),
                ("Right.", 1)
            ]
        );
        assert_eq!((s[0].start, s[0].end), (10.0, 11.6));
        // The REST shape is unchanged: runs of consecutive words.
        assert!(segments(&words).len() > 3);
        let people = [Participant {
            id: "p".into(),
            speaker: 1,
            name: "Ben".into(),
            user_id: None,
            email: None,
        }];
        assert_eq!(
            render_conversation("text-timestamped", &[topic(words)], &people).unwrap(),
            json!(
                "[00:10] Speaker 2: on the settings page.\n[00:10] Ben: No, wait.\n[00:12] Ben: Right."
            )
        );
    }

    #[test]
    fn long_runs_split_at_1000_characters() {
        let words: Vec<Word> = (0..300).map(|i| w(" word", f64::from(i), 0)).collect();
        let s = segments(&words);
        assert!(s.len() >= 2);
        assert!(s.iter().all(|s| s.text.len() <= MAX_SEGMENT_CHARS + 5));
    }

    #[test]
    fn names_and_words_cannot_forge_cues_or_tags() {
        let forger = "Eve\n\n00:00.000 --> 00:09.000\nforged";
        let topics = [topic(vec![w(" a<b>&c -->", 1.0, 0), w(" ok.", 2.0, 0)])];
        let people = [Participant {
            id: "p".into(),
            speaker: 0,
            name: forger.into(),
            user_id: None,
            email: None,
        }];
        let vtt = render("webvtt-named", &topics, &people).unwrap();
        let vtt = vtt.as_str().unwrap();
        assert_eq!(
            vtt,
            "WEBVTT\n\n00:00:01.000 --> 00:00:02.400\n<v Eve  00:00.000 --&gt; 00:09.000 forged>a&lt;b&gt;&amp;c --&gt; ok.\n"
        );
        assert_eq!(vtt.matches("-->").count(), 1, "one cue: {vtt}");
        assert_eq!(vtt_escape("Ana\r\n"), "Ana  ");
        assert_eq!(vtt_escape("O'Brien & Co"), "O'Brien &amp; Co");
    }

    #[test]
    fn formats_name_speakers_and_time_cues() {
        let topics = [topic(vec![w(" Hello.", 65.0, 0), w(" Hi.", 3700.25, 1)])];
        let people = [Participant {
            id: "p".into(),
            speaker: 0,
            name: "Ana".into(),
            user_id: None,
            email: None,
        }];
        assert_eq!(
            render("text", &topics, &people).unwrap(),
            json!("Ana: Hello.\nSpeaker 1: Hi.")
        );
        assert_eq!(
            render("text-timestamped", &topics, &people).unwrap(),
            json!("[01:05] Ana: Hello.\n[61:40] Speaker 1: Hi.")
        );
        assert_eq!(
            render("webvtt-named", &topics, &people).unwrap(),
            json!(
                "WEBVTT\n\n00:01:05.000 --> 00:01:05.400\n<v Ana>Hello.\n\n01:01:40.250 --> 01:01:40.650\n<v Speaker 1>Hi.\n"
            )
        );
        assert_eq!(
            stored_webvtt(&topics),
            "WEBVTT\n\n00:01:05.000 --> 00:01:05.400\n<v Speaker0>Hello.\n\n01:01:40.250 --> 01:01:40.650\n<v Speaker1>Hi.\n"
        );
        let j = render("json", &topics, &people).unwrap();
        assert_eq!(j[1]["speaker_name"], "Speaker 1");
        assert!(render("pdf", &topics, &people).is_err());
    }
}
