using System.Text.Json;

namespace Shepherd.Simulator;

/// <summary>The bodies of successful answers, in each endpoint's shape, derived from the request alone.</summary>
public sealed partial class SimulatedProvider
{
    private static void WriteAnswer(Utf8JsonWriter json, string endpoint, RequestShape shape, ulong seed, Usage usage, DateTimeOffset now, string? structured)
    {
        var outputTokens = usage.Output;
        var inputTokens = usage.Input + usage.CacheWrite + usage.CacheRead;
        var id = $"{seed:x16}";
        var text = structured ?? Text(seed, outputTokens);
        var created = now.ToUnixTimeSeconds();
        json.WriteStartObject();
        switch (endpoint)
        {
            case "/v1/messages":
                WriteMessage(json, id, shape, text, usage with { Output = outputTokens });
                break;
            case "/v1/embeddings":
                json.WriteString("object", "list");
                json.WriteStartArray("data");
                for (var i = 0; i < shape.Inputs; i++)
                {
                    json.WriteStartObject();
                    json.WriteString("object", "embedding");
                    json.WriteNumber("index", i);
                    var vector = Vector(seed + (ulong)i, shape.Dimensions);
                    if (shape.Base64)
                    {
                        // Little-endian float32s, as the SDKs decode them.
                        var bytes = new byte[vector.Length * sizeof(float)];
                        for (var v = 0; v < vector.Length; v++)
                        {
                            System.Buffers.Binary.BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(v * sizeof(float)), (float)vector[v]);
                        }

                        json.WriteBase64String("embedding", bytes);
                    }
                    else
                    {
                        json.WriteStartArray("embedding");
                        foreach (var value in vector)
                        {
                            json.WriteNumberValue(value);
                        }

                        json.WriteEndArray();
                    }

                    json.WriteEndObject();
                }

                json.WriteEndArray();
                json.WriteString("model", shape.Model);
                WriteUsage(json, "prompt_tokens", inputTokens, null, 0);
                break;
            case "/v1/responses":
                json.WriteString("id", "resp_" + id);
                json.WriteString("object", "response");
                json.WriteNumber("created_at", created);
                json.WriteString("status", "completed");
                json.WriteString("model", shape.Model);
                WriteServiceTier(json, shape);
                json.WriteStartArray("output");
                WriteOutputMessage(json, id, "completed", text);
                json.WriteEndArray();
                WriteUsage(json, "input_tokens", inputTokens, "output_tokens", outputTokens);
                break;
            default:
                var chat = endpoint == "/v1/chat/completions";
                json.WriteString("id", (chat ? "chatcmpl-" : "cmpl-") + id);
                json.WriteString("object", chat ? "chat.completion" : "text_completion");
                json.WriteNumber("created", created);
                json.WriteString("model", shape.Model);
                WriteServiceTier(json, shape);
                json.WriteStartArray("choices");
                json.WriteStartObject();
                json.WriteNumber("index", 0);
                if (chat)
                {
                    json.WriteStartObject("message");
                    json.WriteString("role", "assistant");
                    json.WriteString("content", text);
                    json.WriteNull("refusal");
                    json.WriteEndObject();
                }
                else
                {
                    json.WriteString("text", text);
                }

                json.WriteNull("logprobs");
                json.WriteString("finish_reason", outputTokens == shape.MaxTokens ? "length" : "stop");
                json.WriteEndObject();
                json.WriteEndArray();
                WriteUsage(json, "prompt_tokens", inputTokens, "completion_tokens", outputTokens);
                break;
        }

        json.WriteEndObject();
    }

    /// <summary>
    /// The fields of an Anthropic message: with its <paramref name="text"/> and stop reason when
    /// whole, or (null text) as a stream's <c>message_start</c> has it, empty and one token out.
    /// </summary>
    private static void WriteMessage(Utf8JsonWriter json, string id, RequestShape shape, string? text, Usage usage)
    {
        json.WriteString("id", "msg_" + id);
        json.WriteString("type", "message");
        json.WriteString("role", "assistant");
        json.WriteString("model", shape.Model);
        json.WriteStartArray("content");
        var tool = text is not null && shape.Structured?.Tool is { } name ? name : null;
        if (tool is not null)
        {
            // A forced tool is answered by its call: the JSON is the tool's input.
            json.WriteStartObject();
            json.WriteString("type", "tool_use");
            json.WriteString("id", "toolu_" + id);
            json.WriteString("name", tool);
            json.WritePropertyName("input");
            json.WriteRawValue(text!);
            json.WriteEndObject();
        }
        else if (text is not null)
        {
            json.WriteStartObject();
            json.WriteString("type", "text");
            json.WriteString("text", text);
            json.WriteEndObject();
        }

        json.WriteEndArray();
        json.WriteString("stop_reason", text is null ? null : tool is not null ? "tool_use" : usage.Output == shape.MaxTokens ? "max_tokens" : "end_turn");
        json.WriteNull("stop_sequence");
        json.WriteStartObject("usage");
        json.WriteNumber("input_tokens", usage.Input);
        json.WriteNumber("cache_creation_input_tokens", usage.CacheWrite);
        json.WriteNumber("cache_read_input_tokens", usage.CacheRead);
        json.WriteNumber("output_tokens", text is null ? 1 : usage.Output);
        json.WriteEndObject();
    }

    /// <summary>A Responses API output item: the assistant's message with its text, in the state given.</summary>
    private static void WriteOutputMessage(Utf8JsonWriter json, string id, string status, string text)
    {
        json.WriteStartObject();
        json.WriteString("type", "message");
        json.WriteString("id", "msg_" + id);
        json.WriteString("status", status);
        json.WriteString("role", "assistant");
        json.WriteStartArray("content");
        json.WriteStartObject();
        json.WriteString("type", "output_text");
        json.WriteString("text", text);
        json.WriteStartArray("annotations");
        json.WriteEndArray();
        json.WriteEndObject();
        json.WriteEndArray();
        json.WriteEndObject();
    }

    /// <summary>Which tier served an OpenAI answer: flex when the request asked for it, the default tier otherwise.</summary>
    private static void WriteServiceTier(Utf8JsonWriter json, RequestShape shape) => json.WriteString("service_tier", shape.Flex ? "flex" : "default");

    private static void WriteUsage(Utf8JsonWriter json, string inputName, int input, string? outputName, int output)
    {
        json.WriteStartObject("usage");
        json.WriteNumber(inputName, input);
        if (outputName is not null)
        {
            json.WriteNumber(outputName, output);
        }

        json.WriteNumber("total_tokens", input + output);

        json.WriteEndObject();
    }

    private static string Text(ulong seed, int tokens)
    {
        var random = new Random(unchecked((int)seed ^ (int)(seed >> 32)));
        var words = new string[tokens];
        for (var i = 0; i < tokens; i++)
        {
            words[i] = Words[random.Next(Words.Length)];
        }

        var text = string.Join(' ', words) + ".";
        return char.ToUpperInvariant(text[0]) + text[1..];
    }

    private static double[] Vector(ulong seed, int dimensions)
    {
        var random = new Random(unchecked((int)seed ^ (int)(seed >> 32)));
        var vector = new double[dimensions];
        var norm = 0.0;
        for (var i = 0; i < dimensions; i++)
        {
            vector[i] = (random.NextDouble() * 2) - 1;
            norm += vector[i] * vector[i];
        }

        norm = Math.Sqrt(norm);
        for (var i = 0; i < dimensions; i++)
        {
            vector[i] = Math.Round(vector[i] / norm, 6);
        }

        return vector;
    }
}
