// Two pages: index.html (the voice app) and react.html (the same session through the React
// hook). In development `npm run dev` serves them and forwards the server's routes to
// uvicorn (server.py on port 8000, or VOICE_APP_SERVER); `npm run build` writes dist/, which
// server.py serves itself.
import { defineConfig } from "vite";

const server = process.env.VOICE_APP_SERVER ?? "http://127.0.0.1:8000";

export default defineConfig({
  resolve: {
    // gemini-tokens is linked from ../../js, whose own node_modules hold a React for its
    // tests: one copy only, the app's, or the hook would run on another React than the page.
    dedupe: ["react", "react-dom", "@google/genai"],
  },
  server: {
    host: "127.0.0.1",
    proxy: { "/token": server, "/signin": server, "/signout": server, "/me": server },
  },
  build: {
    rolldownOptions: {
      input: { main: "index.html", react: "react.html" },
    },
  },
});
