from support import conversation


async def test_echo_reply(start_channel):
    channel = await start_channel()
    async with conversation(channel) as client:
        await client.say("hello there")
        reply = await client.reply()
        assert reply.text == "You said: hello there"
        assert reply.final
