from voice_channel.cli import main

main()
