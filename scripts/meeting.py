#!/usr/bin/env python3
"""A scripted meeting of the evaluation set (eval/meetings/NAME.json; eval/README.md has the
schema): synthesize it as Daily delivers a recording — one WebM/Opus track per participant, each
starting when its participant joined, plus recording.json with the names and offsets — with
espeak-ng (each speaker's voice, 155 words a minute), sox and ffmpeg — or, for a meeting of
recorded speech (`source`), from the clips of a Debian package, fetched with `apt-get download`
and checked against their sha256 sums; or print its dialogue or its facts.

usage: meeting.py synth MEETING OUT_DIR [--repeat N]  synthesize (the dialogue N times)
       meeting.py long MINUTES OUT_DIR               a long meeting of six participants, made
                                                     of the set's meetings (see `long`)
       meeting.py transcript MEETING                 the dialogue as `Name: text` lines
       meeting.py facts MEETING                      the facts a summary should carry (JSON)
       meeting.py check [MEETING...]                 validate files (default: the whole set)
       meeting.py list [MEETING...]                  name, kind, speakers, words, facts, split

MEETING is a file (eval/meetings/standup.json), the same without .json, or a bare name of the
set (standup).
"""

import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

SET = pathlib.Path(__file__).resolve().parent.parent / "eval" / "meetings"
KINDS = {"decision", "owner+task", "date", "number", "finding"}
GAP_S = 0.5
RATE = 22050


def path_of(meeting):
    p = pathlib.Path(meeting)
    for candidate in (p, p.with_name(p.name + ".json"), SET / f"{meeting}.json"):
        if candidate.is_file():
            return candidate
    sys.exit(f"meeting.py: no meeting {meeting!r} (a file, or a name in {SET})")


def load(meeting):
    m = json.loads(path_of(meeting).read_text(encoding="utf-8"))
    for s in m["speakers"]:
        s["joins_at"] = float(s["joins_at"])
    return m


def held_out(name):
    """The split of eval/README.md: held out when the first byte of sha256(name) is odd. The demo
    has been tuned on since before the set existed, so it never is (its byte is even anyway)."""
    return name != "demo" and hashlib.sha256(name.encode("utf-8")).digest()[0] % 2 == 1


def transcript(m):
    return "\n".join(f"{who}: {text}" for who, text, *_ in m["dialogue"])


def sha256(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def cache_dir():
    return pathlib.Path(os.environ.get("REFLOW_CACHE_DIR") or pathlib.Path.home() / ".cache/reflow")


def fetch_source(src):
    """The unpacked Debian package of a recorded meeting (its `root` folder), fetched once into
    the cache with `apt-get download` and checked: the .deb's sum, then every clip's."""
    package, version = src["debian"], src["version"]
    unpacked = cache_dir() / "eval-sources" / f"{package}_{version}"
    if not (unpacked / ".ok").is_file():
        downloads = cache_dir() / "downloads"
        downloads.mkdir(parents=True, exist_ok=True)
        found = lambda: sorted(downloads.glob(f"{package}_{version.replace(':', '%3a')}_*.deb"))
        if not found():
            get = ["apt-get", "download", f"{package}={version}"]
            if subprocess.run(get, cwd=downloads, capture_output=True).returncode != 0:
                # The package lists may be missing or stale: refresh them once and retry.
                sudo = [] if os.geteuid() == 0 else ["sudo"]
                subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True)
                subprocess.run(get, cwd=downloads, check=True, capture_output=True)
        deb = found()[0]
        if sha256(deb) != src["deb_sha256"]:
            deb.unlink()
            sys.exit(f"meeting.py: checksum mismatch for {deb.name} (expected "
                     f"{src['deb_sha256']}); deleted it")
        tmp = unpacked.with_name(unpacked.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        run("dpkg-deb", "-x", str(deb), str(tmp))
        (tmp / ".ok").touch()
        shutil.rmtree(unpacked, ignore_errors=True)
        tmp.rename(unpacked)
    root = unpacked / src["root"]
    for clip, expected in src["sha256"].items():
        if sha256(root / clip) != expected:
            sys.exit(f"meeting.py: checksum mismatch for {clip} of {package} {version}")
    return root


def problems(m, path):
    """What is wrong with a meeting file (an empty list when nothing)."""
    out = []
    if m.get("name") != path.stem:
        out.append(f"name {m.get('name')!r} is not the file's stem {path.stem!r}")
    names = [s["name"] for s in m["speakers"]]
    if not 2 <= len(names) <= 6:
        out.append(f"{len(names)} speakers (2-6 expected)")
    recorded = "source" in m
    voices = [s["voice"] for s in m["speakers"] if "voice" in s]
    if len(voices) != (0 if recorded else len(names)):
        out.append("every speaker needs a voice, except in a meeting of recorded speech (none)")
    if len(set(voices)) != len(voices):
        out.append("two speakers share a voice")
    for line in m["dialogue"]:
        clip = line[2]["clip"] if len(line) == 3 else None
        if recorded and clip not in m["source"]["sha256"]:
            out.append(f"line {line[1][:40]!r}: no clip with a sha256 in source")
        if not recorded and len(line) != 2:
            out.append(f"line {line[1][:40]!r}: a clip, but the meeting has no source")
    spoken = {who for who, *_ in m["dialogue"]}
    for who in spoken - set(names):
        out.append(f"{who!r} speaks but is not a speaker")
    for who in set(names) - spoken:
        out.append(f"{who!r} never speaks")
    if not m.get("subjects"):
        out.append("no subjects")
    if bool(m.get("decides_nothing")) != (not m["facts"]):
        out.append("decides_nothing must be true exactly when there are no facts")
    text = " ".join(t for _, t, *_ in m["dialogue"])
    for f in m["facts"]:
        if f.get("kind") not in KINDS:
            out.append(f"fact {f['fact']!r}: kind {f.get('kind')!r} not one of {sorted(KINDS)}")
        if (f.get("kind") == "owner+task") != ("owner" in f):
            out.append(f"fact {f['fact']!r}: an owner exactly when the kind is owner+task")
        if "owner" in f and f["owner"] not in names:
            out.append(f"fact {f['fact']!r}: owner {f['owner']!r} is not a speaker")
        try:
            found = all(re.search(p, text, re.IGNORECASE) for p in f["patterns"])
        except re.error as e:
            out.append(f"fact {f['fact']!r}: bad pattern: {e}")
            continue
        if not f["patterns"] or not found:
            out.append(f"fact {f['fact']!r}: its patterns do not all match the dialogue")
    return out


def run(*args):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def seconds(path):
    out = subprocess.run(["soxi", "-D", str(path)], check=True, capture_output=True, text=True)
    return float(out.stdout.strip())


def synth(m, out, repeat=1):
    """Write one WebM/Opus track per speaker and recording.json into `out`; print a line."""
    speakers = {s["name"]: s for s in m["speakers"]}
    dialogue = [tuple(line) for line in m["dialogue"]] * repeat
    root = fetch_source(m["source"]) if "source" in m else None
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        # Utterances in order, each starting after the previous one ends.
        clock = 1.0
        parts = {name: [] for name in speakers}
        for n, (who, text, *clip) in enumerate(dialogue):
            wav = tmp / f"u{n:02}.wav"
            if clip:
                # A recorded line: the clip, as mono audio at the rate of the rest.
                path = root / clip[0]["clip"]
                raw = ["-t", "raw", "-r", "8000", "-e", "signed", "-b", "16", "-c", "1"]
                run("sox", *(raw if path.suffix == ".raw" else []), str(path),
                    "-r", str(RATE), "-c", "1", str(wav))
            else:
                run("espeak-ng", "-v", speakers[who]["voice"], "-s", "155", "-w", str(wav), text)
            start = max(clock, speakers[who]["joins_at"] + 0.5)
            if start > clock:
                print(f"meeting.py: line {n + 1} waits {start - clock:.1f} s for {who} to join",
                      file=sys.stderr)
            parts[who].append((start, wav))
            clock = start + seconds(wav) + GAP_S
        manifest = {"tracks": [], "duration_s": round(clock, 2)}
        for name, spec in speakers.items():
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
    print(f"{out}: {len(speakers)} tracks, {manifest['duration_s']:.0f} s of dialogue")


# The long meeting (`just bench-long`): six participants, each with the voice of a speaker of
# the set, who join and leave; the set's meetings of synthesized speech one after the other.
LONG_PARTICIPANTS = [("Ana", "en-us"), ("Ben", "en-gb"), ("Chloe", "en+f3"), ("Omar", "en+m3"),
                     ("Rosa", "en+f2"), ("Liam", "en-gb-scotland")]
# Meeting and the participants who speak its speakers' lines, in the order of its speakers.
LONG_OPENING = [("demo", [0, 1, 2]), ("standup", [0, 1, 2, 3]), ("hiring-debrief", [0, 3, 4]),
                ("one-to-one", [4, 1]), ("casual-chat", [2, 3, 4]),
                ("retrospective", [0, 1, 2, 3, 4, 5]), ("demo", [5, 1, 4]),
                ("standup", [5, 3, 4, 1]), ("hiring-debrief", [1, 5, 3]), ("one-to-one", [3, 5]),
                ("casual-chat", [1, 4, 5]), ("retrospective", [1, 3, 4, 5, 2, 0])]
# The closing meetings, never heard before them: their facts are the later half's.
LONG_CLOSING = [("customer-call", [3, 1, 5, 4]), ("incident-review", [1, 3, 4, 5]),
                ("planning", [5, 1, 4, 3, 2])]


def estimate_s(m):
    """A meeting's length as synth makes it, roughly (espeak-ng at 155 comes out at about 165
    words a minute; GAP_S between lines)."""
    words = sum(len(t.split()) for _, t, *_ in m["dialogue"])
    return words / 165 * 60 + len(m["dialogue"]) * GAP_S


def long_meeting(minutes):
    """The meeting of about `minutes`: the closing meetings that fit in its second half (at least
    one, from the end), after as much of the opening as fills the rest. Speakers' names become
    the participants' (in the lines and the facts); a participant joins a little before their
    first line and leaves after their last. `later_facts` are the closing meetings' facts."""
    closing = []
    for part in reversed(LONG_CLOSING):
        total = sum(estimate_s(load(n)) for n, _ in closing + [part])
        if closing and total > minutes * 30:
            break
        closing.insert(0, part)
    left = minutes * 60 - sum(estimate_s(load(n)) for n, _ in closing)
    opening = []
    for part in LONG_OPENING:
        if left <= 0:
            break
        opening.append(part)
        left -= estimate_s(load(part[0]))
    dialogue, facts, later, first_s, clock = [], [], [], {}, 0.0
    for k, (name, who) in enumerate(opening + closing):
        m = load(name)
        rename = {s["name"]: LONG_PARTICIPANTS[p][0] for s, p in zip(m["speakers"], who)}
        names = re.compile(r"\b(" + "|".join(map(re.escape, rename)) + r")\b")
        new = lambda text: names.sub(lambda x: rename[x.group(1)], text)
        for speaker, text, *_ in m["dialogue"]:
            first_s.setdefault(rename[speaker], clock)
            dialogue.append([rename[speaker], new(text)])
        clock += estimate_s(m)
        for f in m["facts"]:
            f = dict(f, fact=new(f["fact"]), patterns=[new(p) for p in f["patterns"]],
                     **({"owner": rename[f["owner"]]} if "owner" in f else {}))
            (later if k >= len(opening) else facts).append(f)
    speakers = [{"name": n, "voice": v, "joins_at": round(max(first_s[n] * 0.9 - 5, 0), 1)}
                for n, v in LONG_PARTICIPANTS if n in first_s]
    return {"name": f"long-{minutes}", "kind": "long meeting", "speakers": speakers,
            "subjects": [], "dialogue": dialogue, "facts": facts + later, "later_facts": later,
            "parts": [n for n, _ in opening + closing], "closing": [n for n, _ in closing]}


def main(args):
    if not args:
        sys.exit(__doc__)
    command, rest = args[0], args[1:]
    if command == "synth" and len(rest) in (2, 4):
        repeat = 1
        if len(rest) == 4:
            if rest[2] != "--repeat":
                sys.exit(__doc__)
            repeat = int(rest[3])
        synth(load(rest[0]), rest[1], repeat)
    elif command == "long" and len(rest) == 2:
        m = long_meeting(int(rest[0]))
        out = pathlib.Path(rest[1])
        out.mkdir(parents=True, exist_ok=True)
        (out / "meeting.json").write_text(json.dumps(m, indent=2, ensure_ascii=False) + "\n")
        synth(m, out)
    elif command == "transcript" and len(rest) == 1:
        print(transcript(load(rest[0])))
    elif command == "facts" and len(rest) == 1:
        print(json.dumps(load(rest[0])["facts"], indent=2, ensure_ascii=False))
    elif command in ("check", "list"):
        paths = [path_of(a) for a in rest] or sorted(SET.glob("*.json"))
        bad = 0
        for p in paths:
            m = load(p)
            if command == "check":
                for problem in problems(m, p):
                    print(f"{p}: {problem}")
                    bad += 1
            else:
                words = sum(len(t.split()) for _, t, *_ in m["dialogue"])
                print("\t".join([m["name"], m["kind"], str(len(m["speakers"])), str(words),
                                 str(len(m["facts"])),
                                 "held-out" if held_out(m["name"]) else "tuning"]))
        if bad:
            sys.exit(1)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
