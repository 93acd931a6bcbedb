gemini-tokens create --uses 1 --expire-minutes 30 \
  --model gemini-2.5-flash-native-audio-preview-12-2025 --modality audio \
  --temperature 0.7 --config '{"session_resumption": {}}' --lock-set --lock top_p
