"""The REST stand-in itself: what it answers validates against the SDK's own response types."""

from __future__ import annotations

import httpx
from elevenlabs import AsyncElevenLabs
from elevenlabs.types import (
    ConversationSignedUrlResponseModel,
    ListSpeechEnginesResponse,
    SpeechEngineResponse,
    TokenResponseModel,
)

from support import ElevenLabsStandin


async def test_responses_are_valid_sdk_types(elevenlabs: ElevenLabsStandin, api_key: str):
    async with httpx.AsyncClient(base_url=elevenlabs.base_url, headers={"xi-api-key": api_key}) as http:
        created = await http.post("/v1/speech-engine", json={"speech_engine": {"ws_url": "wss://h/ws"}, "name": "a"})
        assert created.status_code == 201
        engine = SpeechEngineResponse.model_validate(created.json())  # strict: every required field is there
        engine_id = engine.speech_engine_id
        for path, model in [
            (f"/v1/speech-engine/{engine_id}", SpeechEngineResponse),
            ("/v1/speech-engine", ListSpeechEnginesResponse),
            (f"/v1/convai/conversation/token?agent_id={engine_id}", TokenResponseModel),
            (f"/v1/convai/conversation/get-signed-url?agent_id={engine_id}", ConversationSignedUrlResponseModel),
        ]:
            response = await http.get(path)
            assert response.status_code == 200, path
            model.model_validate(response.json())
        assert (await http.get("/v1/speech-engine", headers={"xi-api-key": "sk_wrong"})).json() == {
            "detail": {"status": "invalid_api_key", "message": "Invalid API key"}
        }


async def test_the_sdk_round_trip(elevenlabs: ElevenLabsStandin, api_key: str):
    async with httpx.AsyncClient() as http:
        client = AsyncElevenLabs(api_key=api_key, base_url=elevenlabs.base_url, httpx_client=http)
        created = await client.speech_engine.create(speech_engine={"ws_url": "wss://h/ws"}, name="round trip")
        agent_id = "agent_" + created.engine_id.removeprefix("seng_")
        assert (await client.speech_engine.get(agent_id)).config.name == "round trip"  # seng_X and agent_X alike
        updated = await client.speech_engine.update(created.engine_id, turn={"turn_timeout": 3})
        assert updated.config.turn.turn_timeout == 3 and updated.config.turn.turn_model == "turn_v3"  # merged
        await client.speech_engine.delete(created.engine_id)
        assert (await client.speech_engine.list()).speech_engines == []
    assert [(r.method, r.path) for r in elevenlabs.state.requests] == [
        ("POST", "/v1/speech-engine"),
        ("GET", f"/v1/speech-engine/{agent_id}"),
        ("PATCH", f"/v1/speech-engine/{created.engine_id}"),
        ("DELETE", f"/v1/speech-engine/{created.engine_id}"),
        ("GET", "/v1/speech-engine"),
    ]
