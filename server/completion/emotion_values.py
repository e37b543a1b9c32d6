"""Default emotion values and the perceived-emotion mapping for the Phoenix-4 tag guarantee
(`server/completion/emotion_tags.py`); both are settings (`emotion_values`, `emotion_map`)."""

# The `<emotion value="…"/>` values Phoenix-4 personas use: Tavus publishes no list, so these are
# the emotions of the SSML-style tag in Cartesia's Sonic docs (volume-speed-emotion page) that
# Tavus' own examples use ("content", "happy"); the evidence is thin, hence a setting.
DEFAULT_EMOTION_VALUES = (
    "neutral", "content", "happy", "excited", "calm", "curious", "sad", "angry", "scared",
    "surprised",
)  # fmt: skip
# What a persona shows in reply to what it sees: a word stem in the perceived emotions → value.
DEFAULT_EMOTION_MAP = {
    "excit": "excited", "enthusias": "excited", "happ": "happy", "smil": "happy",
    "laugh": "happy", "joy": "happy", "cheer": "happy", "delight": "happy", "amus": "happy",
    "sad": "sad", "upset": "sad", "cry": "sad", "tear": "sad", "disappoint": "sad",
    "grief": "sad", "unhapp": "sad", "frustrat": "calm", "angr": "calm", "anger": "calm",
    "annoy": "calm", "irritat": "calm",
    "stress": "calm", "tense": "calm", "nervous": "calm", "anxi": "calm", "worr": "calm",
    "scared": "calm", "afraid": "calm", "fear": "calm", "confus": "curious", "puzzl": "curious",
    "uncertain": "curious", "unsure": "curious", "curious": "curious", "interest": "curious",
    "surpris": "surprised", "shock": "surprised", "amaz": "surprised", "bored": "content",
    "tired": "content", "relax": "content", "content": "content", "calm": "calm",
    "focus": "content", "engag": "content", "neutral": "neutral",
}  # fmt: skip
