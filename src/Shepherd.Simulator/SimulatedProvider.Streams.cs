using System.Text;
using System.Text.Json;

namespace Shepherd.Simulator;

/// <summary>
/// Answers to requests that ask for a stream (<c>"stream": true</c>): server-sent events in each
/// dialect's shape, carrying the same text and usage as the whole answer would. OpenAI's chat and
/// completions chunks end in <c>data: [DONE]</c> and report usage in a last chunk only when
/// <c>stream_options.include_usage</c> asks; the Responses API and Anthropic's Messages API name
/// each event and always report usage (Anthropic's input in <c>message_start</c>, its output in
/// <c>message_delta</c>).
/// </summary>
public sealed partial class SimulatedProvider
{
    /// <summary>Words of text sent per event.</summary>
    private const int WordsPerEvent = 4;

    private static List<byte[]> Streamed(string endpoint, RequestShape shape, ulong seed, Usage usage, DateTimeOffset now, string? structured)
    {
        var text = structured ?? Text(seed, usage.Output);
        var pieces = Pieces(text);
        var events = new List<byte[]>();
        var id = $"{seed:x16}";
        switch (endpoint)
        {
            case "/v1/messages":
                StreamMessages(events, shape, id, pieces, usage);
                break;
            case "/v1/responses":
                StreamResponse(events, shape, id, text, pieces, usage, now);
                break;
            default:
                StreamChoices(events, endpoint == "/v1/chat/completions", shape, id, pieces, usage, now);
                break;
        }

        return events;
    }

    /// <summary>A streamed answer: its events, paced by <see cref="SimulatorOptions.StreamInterval"/> where a transport can.</summary>
    private SimulatedResponse Stream(List<KeyValuePair<string, string>> headers, List<byte[]> events) =>
        new(200, headers, [.. events.SelectMany(e => e)], ContentType: "text/event-stream") { Events = events, EventInterval = _options.StreamInterval };

    /// <summary>The text in the pieces events carry, a few words each, which put together are the text.</summary>
    private static List<string> Pieces(string text)
    {
        var words = text.Split(' ');
        var pieces = new List<string>();
        for (var i = 0; i < words.Length; i += WordsPerEvent)
        {
            pieces.Add((i == 0 ? "" : " ") + string.Join(' ', words.Skip(i).Take(WordsPerEvent)));
        }

        return pieces;
    }

    /// <summary>OpenAI's chat completion or completion chunks, then the usage chunk when asked for, then <c>[DONE]</c>.</summary>
    private static void StreamChoices(List<byte[]> events, bool chat, RequestShape shape, string id, List<string> pieces, Usage usage, DateTimeOffset now)
    {
        var input = usage.Input + usage.CacheWrite + usage.CacheRead;
        var finish = usage.Output == shape.MaxTokens ? "length" : "stop";
        void Chunk(string? piece, bool first, string? finishReason, bool usageOnly)
        {
            Event(events, null, json =>
            {
                json.WriteString("id", (chat ? "chatcmpl-" : "cmpl-") + id);
                json.WriteString("object", chat ? "chat.completion.chunk" : "text_completion");
                json.WriteNumber("created", now.ToUnixTimeSeconds());
                json.WriteString("model", shape.Model);
                WriteServiceTier(json, shape);
                json.WriteStartArray("choices");
                if (!usageOnly)
                {
                    json.WriteStartObject();
                    json.WriteNumber("index", 0);
                    if (chat)
                    {
                        json.WriteStartObject("delta");
                        if (first)
                        {
                            json.WriteString("role", "assistant");
                        }

                        if (piece is not null)
                        {
                            json.WriteString("content", piece);
                        }

                        json.WriteEndObject();
                    }
                    else
                    {
                        json.WriteString("text", piece ?? "");
                    }

                    json.WriteNull("logprobs");
                    json.WriteString("finish_reason", finishReason);
                    json.WriteEndObject();
                }

                json.WriteEndArray();
                if (shape.StreamUsage)
                {
                    if (usageOnly)
                    {
                        WriteUsage(json, "prompt_tokens", input, "completion_tokens", usage.Output);
                    }
                    else
                    {
                        json.WriteNull("usage");
                    }
                }
            });
        }

        for (var i = 0; i < pieces.Count; i++)
        {
            Chunk(pieces[i], i == 0, null, usageOnly: false);
        }

        var tail = events.Count;
        Chunk(null, pieces.Count == 0, finish, usageOnly: false);
        if (shape.StreamUsage)
        {
            Chunk(null, false, null, usageOnly: true);
        }

        events.Add("data: [DONE]\n\n"u8.ToArray());
        Together(events, tail);
    }

    /// <summary>
    /// Makes the events from <paramref name="tail"/> on one write: once the text has been made, a
    /// provider sends its end (the finish, the usage, the stop) at once, not paced like the text.
    /// </summary>
    private static void Together(List<byte[]> events, int tail)
    {
        var end = events.Skip(tail).SelectMany(e => e).ToArray();
        events.RemoveRange(tail, events.Count - tail);
        events.Add(end);
    }

    /// <summary>The Responses API's events: created, the text's deltas and its end, completed with the usage.</summary>
    private static void StreamResponse(List<byte[]> events, RequestShape shape, string id, string text, List<string> pieces, Usage usage, DateTimeOffset now)
    {
        var sequence = 0;
        var input = usage.Input + usage.CacheWrite + usage.CacheRead;
        void Response(Utf8JsonWriter json, string status, bool done)
        {
            json.WriteStartObject("response");
            json.WriteString("id", "resp_" + id);
            json.WriteString("object", "response");
            json.WriteNumber("created_at", now.ToUnixTimeSeconds());
            json.WriteString("status", status);
            json.WriteString("model", shape.Model);
            WriteServiceTier(json, shape);
            json.WriteStartArray("output");
            if (done)
            {
                WriteOutputMessage(json, id, "completed", text);
            }

            json.WriteEndArray();
            if (done)
            {
                WriteUsage(json, "input_tokens", input, "output_tokens", usage.Output);
            }
            else
            {
                json.WriteNull("usage");
            }

            json.WriteEndObject();
        }

        void Named(string type, Action<Utf8JsonWriter> write) => Event(events, type, json =>
        {
            json.WriteString("type", type);
            json.WriteNumber("sequence_number", sequence++);
            write(json);
        });

        Named("response.created", json => Response(json, "in_progress", done: false));
        Named("response.output_item.added", json =>
        {
            json.WriteNumber("output_index", 0);
            json.WritePropertyName("item");
            WriteOutputMessage(json, id, "in_progress", "");
        });
        foreach (var piece in pieces)
        {
            Named("response.output_text.delta", json =>
            {
                json.WriteString("item_id", "msg_" + id);
                json.WriteNumber("output_index", 0);
                json.WriteNumber("content_index", 0);
                json.WriteString("delta", piece);
            });
        }

        var tail = events.Count;
        Named("response.output_text.done", json =>
        {
            json.WriteString("item_id", "msg_" + id);
            json.WriteNumber("output_index", 0);
            json.WriteNumber("content_index", 0);
            json.WriteString("text", text);
        });
        Named("response.output_item.done", json =>
        {
            json.WriteNumber("output_index", 0);
            json.WritePropertyName("item");
            WriteOutputMessage(json, id, "completed", text);
        });
        Named("response.completed", json => Response(json, "completed", done: true));
        Together(events, tail);
    }

    /// <summary>Anthropic's events: message_start with the input usage, the text block's deltas, message_delta with the output usage, message_stop.</summary>
    private static void StreamMessages(List<byte[]> events, RequestShape shape, string id, List<string> pieces, Usage usage)
    {
        void Named(string type, Action<Utf8JsonWriter> write) => Event(events, type, json =>
        {
            json.WriteString("type", type);
            write(json);
        });

        Named("message_start", json =>
        {
            json.WriteStartObject("message");
            WriteMessage(json, id, shape, null, usage);
            json.WriteEndObject();
        });
        Named("content_block_start", json =>
        {
            json.WriteNumber("index", 0);
            json.WriteStartObject("content_block");
            json.WriteString("type", "text");
            json.WriteString("text", "");
            json.WriteEndObject();
        });
        Named("ping", _ => { });
        foreach (var piece in pieces)
        {
            Named("content_block_delta", json =>
            {
                json.WriteNumber("index", 0);
                json.WriteStartObject("delta");
                json.WriteString("type", "text_delta");
                json.WriteString("text", piece);
                json.WriteEndObject();
            });
        }

        var tail = events.Count;
        Named("content_block_stop", json => json.WriteNumber("index", 0));
        Named("message_delta", json =>
        {
            json.WriteStartObject("delta");
            json.WriteString("stop_reason", usage.Output == shape.MaxTokens ? "max_tokens" : "end_turn");
            json.WriteNull("stop_sequence");
            json.WriteEndObject();
            json.WriteStartObject("usage");
            json.WriteNumber("output_tokens", usage.Output);
            json.WriteEndObject();
        });
        Named("message_stop", _ => { });
        Together(events, tail);
    }

    /// <summary>One server-sent event: its name when the dialect names events, and its data, one JSON object on one line.</summary>
    private static void Event(List<byte[]> events, string? name, Action<Utf8JsonWriter> write)
    {
        var data = Write(json =>
        {
            json.WriteStartObject();
            write(json);
            json.WriteEndObject();
        });
        events.Add([.. name is null ? [] : Encoding.UTF8.GetBytes($"event: {name}\n"), .. "data: "u8, .. data, .. "\n\n"u8]);
    }
}
