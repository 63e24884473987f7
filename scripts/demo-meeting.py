#!/usr/bin/env python3
"""Synthesize a 3-speaker meeting for `just demo`: one audio track per participant, as Daily
delivers them (each track starts when its participant joined), plus recording.json with the
names and offsets. Real speech from espeak-ng, three different voices, about three minutes of
dialogue on clear topics (release date, marketing budget, hiring, customer feedback).

usage: demo-meeting.py OUT_DIR [--repeat N]   synthesize the meeting (its dialogue N times)
       demo-meeting.py --transcript  print the dialogue as `Name: text` lines
       demo-meeting.py --facts       print the facts a summary should carry (JSON)
"""

import json
import pathlib
import subprocess
import sys
import tempfile

SPEAKERS = {
    "Ana": {"voice": "en-us", "joins_at": 0.0},
    "Ben": {"voice": "en-gb", "joins_at": 2.5},
    "Chloe": {"voice": "en+f3", "joins_at": 6.0},
}

DIALOGUE = [
    ("Ana", "Good morning everyone. Today we need to decide the release date for version two, "
            "agree on the marketing budget, and talk about hiring for the mobile team."),
    ("Ben", "Morning Ana. Before we start, the test suite for version two passed last night, "
            "so quality assurance is complete."),
    ("Chloe", "Good news. The only open bug is the crash on the settings page, "
              "and the fix is already in review."),
    ("Ana", "Then I propose we ship version two on Monday the fourteenth. "
            "Does anyone see a reason to wait?"),
    ("Ben", "No objection from me. Monday works, as long as the settings fix is merged by Friday."),
    ("Chloe", "I will merge the settings fix by Thursday and tag the release candidate on Friday."),
    ("Ana", "Great. Decision made: version two ships on Monday. "
            "Now the marketing budget for the launch campaign."),
    ("Ben", "I asked for ten thousand dollars. Six thousand for online ads, "
            "three thousand for the launch video, and one thousand for the community event."),
    ("Chloe", "The launch video seems expensive. Could we record it ourselves and save money?"),
    ("Ben", "We could, but the last video we made ourselves had poor sound. "
            "I would rather pay a studio this time."),
    ("Ana", "Let us approve the ten thousand dollars, and Ben will send the detailed budget report "
            "to finance by Wednesday."),
    ("Ben", "Agreed. I will send the budget report to finance by Wednesday."),
    ("Ana", "Next topic is hiring. The mobile team is behind on the tablet layout."),
    ("Chloe", "We need two more engineers for the mobile team. One senior engineer for iOS "
              "and one engineer for Android."),
    ("Ben", "Do we have the headcount approved for both positions?"),
    ("Ana", "Yes, both positions are approved. Chloe, can you write the job descriptions?"),
    ("Chloe", "Yes. I will write both job descriptions this week and schedule the first "
              "interviews for next Tuesday."),
    ("Ana", "Last topic, customer feedback. Several customers say the search is too slow "
            "on large projects."),
    ("Ben", "Support received twelve tickets about slow search this month, mostly from "
            "enterprise customers."),
    ("Chloe", "The search index is rebuilt on every change. We should make it incremental. "
              "I estimate two weeks of work."),
    ("Ana", "Let us put the incremental search index on the roadmap right after the release. "
            "Chloe will own it."),
    ("Ben", "I will tell the enterprise customers that a fix for slow search is planned for next month."),
    ("Ana", "Thank you both. To summarize: release on Monday, ten thousand dollars for marketing, "
            "two mobile engineers to hire, and faster search next month. See you next week."),
]

# What an attendee expects a summary to say: each decision, owner and date of the dialogue, with
# the patterns (case-insensitive regular expressions, all must match somewhere in the recap,
# the long summary or the action items) that find it however it is phrased.
FACTS = [
    ("version two ships on Monday the 14th", [r"monday|14th|fourteenth"]),
    ("the $10,000 marketing budget is approved", [r"10,000|10000|ten thousand|\$10k|10k"]),
    ("Ben sends the budget report to finance by Wednesday", [r"budget report|report", r"wednesday"]),
    ("two engineers are hired for the mobile team", [r"\b(two|2)\b[^.]{0,40}engineer"]),
    ("Chloe writes the job descriptions this week", [r"job description"]),
    ("the first interviews are next Tuesday", [r"interview", r"tuesday"]),
    ("Chloe merges the settings fix by Thursday", [r"settings", r"thursday"]),
    ("an incremental search index goes on the roadmap after the release, owned by Chloe",
     [r"incremental|search index|faster search|slow search", r"next month|after the release|roadmap"]),
]

GAP_S = 0.5
RATE = 22050


def run(*args):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def seconds(path):
    out = subprocess.run(["soxi", "-D", str(path)], check=True, capture_output=True, text=True)
    return float(out.stdout.strip())


def main():
    if sys.argv[1:] == ["--facts"]:
        print(json.dumps([{"fact": f, "patterns": p} for f, p in FACTS], indent=2))
        return
    if sys.argv[1:] == ["--transcript"]:
        print("\n".join(f"{who}: {text}" for who, text in DIALOGUE))
        return
    args = sys.argv[1:]
    repeat = 1
    if len(args) == 3 and args[1] == "--repeat":
        repeat = int(args[2])
        args = args[:1]
    if len(args) != 1:
        sys.exit(__doc__)
    out = pathlib.Path(args[0])
    dialogue = DIALOGUE * repeat
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        # Utterances in order, each starting after the previous one ends.
        clock = 1.0
        parts = {name: [] for name in SPEAKERS}
        for n, (who, text) in enumerate(dialogue):
            wav = tmp / f"u{n:02}.wav"
            run("espeak-ng", "-v", SPEAKERS[who]["voice"], "-s", "155", "-w", str(wav), text)
            start = max(clock, SPEAKERS[who]["joins_at"] + 0.5)
            parts[who].append((start, wav))
            clock = start + seconds(wav) + GAP_S
        manifest = {"tracks": [], "duration_s": round(clock, 2)}
        for name, spec in SPEAKERS.items():
            # The track begins when the participant joined; silence until each utterance.
            pieces, at = [], spec["joins_at"]
            for k, (start, wav) in enumerate(parts[name]):
                silence = tmp / f"{name}-gap{k}.wav"
                run("sox", "-n", "-r", str(RATE), "-c", "1", str(silence), "trim", "0",
                    f"{max(start - at, 0.0):.3f}")
                pieces += [str(silence), str(wav)]
                at = start + seconds(wav)
            track_wav = tmp / f"{name}.wav"
            run("sox", *pieces, str(track_wav))
            track = out / f"{name.lower()}.webm"
            run("ffmpeg", "-y", "-loglevel", "error", "-i", str(track_wav), "-ac", "1",
                "-ar", "48000", "-c:a", "libopus", "-b:a", "64k", str(track))
            manifest["tracks"].append(
                {"file": track.name, "name": name, "offset_s": spec["joins_at"]})
        (out / "recording.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"{out}: {len(SPEAKERS)} tracks, {manifest['duration_s']:.0f} s of dialogue")


if __name__ == "__main__":
    main()
