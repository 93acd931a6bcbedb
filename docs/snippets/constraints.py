"""The same constraints as a dict and as attrs classes."""

from gemini_tokens import (
    Content,
    LiveConnectConfig,
    LiveConnectConstraints,
    Modality,
    Part,
    PrebuiltVoiceConfig,
    SessionResumptionConfig,
    SpeechConfig,
    VoiceConfig,
)

as_dict = {
    "model": "gemini-2.5-flash-native-audio-preview-12-2025",
    "config": {
        "response_modalities": ["audio"],
        "temperature": 0.7,
        "speech_config": "Kore",  # shorthand for the prebuilt voice below
        "system_instruction": "You are a helpful tutor.",  # shorthand for one text part
        "session_resumption": {},
    },
}

as_classes = LiveConnectConstraints(
    model="gemini-2.5-flash-native-audio-preview-12-2025",
    config=LiveConnectConfig(
        response_modalities=[Modality.AUDIO],
        temperature=0.7,
        speech_config=SpeechConfig(
            voice_config=VoiceConfig(prebuilt_voice_config=PrebuiltVoiceConfig(voice_name="Kore"))
        ),
        system_instruction=Content(parts=[Part(text="You are a helpful tutor.")], role="user"),
        session_resumption=SessionResumptionConfig(),
    ),
)
# Either form can be passed as create(live_connect_constraints=...).
