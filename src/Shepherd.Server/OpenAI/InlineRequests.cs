using System.Buffers;
using System.Text.Json;
using Shepherd.Engine.Formats;
using Shepherd.Server.Batches;

namespace Shepherd.Server.OpenAI;

/// <summary>
/// Turns the <c>requests</c> of an inline batch into OpenAI batch lines: a <c>prompt</c> becomes
/// the body the endpoint expects, a <c>body</c> is taken as it is, and the batch's <c>model</c>
/// fills in where a body names none.
/// </summary>
internal static class InlineRequests
{
    /// <summary>The answer length asked for when a prompt goes to <c>/v1/messages</c>, which requires one.</summary>
    public const int DefaultMaxTokens = 1024;

    private const int MaxErrors = 100;

    /// <summary>
    /// Writes one line per request of <paramref name="spoolPath"/> to <paramref name="linesPath"/>,
    /// a blank line (which readers pass over, so the lines keep their numbers) for each request
    /// that cannot be turned into one, and returns those requests' problems. At
    /// <see cref="MaxErrors"/> problems it stops with a 400 led by <paramref name="refusal"/>.
    /// </summary>
    public static async Task<IReadOnlyList<InputError>> ConvertAsync(string spoolPath, string linesPath, string endpoint, string? model, int maxLineBytes, string refusal, CancellationToken cancellationToken)
    {
        await using var input = File.OpenRead(spoolPath);
        using var reader = new JsonlLineReader(input, maxLineBytes);
        await using var output = new FileStream(linesPath, FileMode.CreateNew, FileAccess.Write, FileShare.None, 64 * 1024, FileOptions.Asynchronous);
        var buffer = new ArrayBufferWriter<byte>(4096);
        await using var json = new Utf8JsonWriter(buffer, JsonWriterExtensions.Options);
        var errors = new List<InputError>();
        while (await reader.ReadAsync(cancellationToken) is var kind && kind != LineKind.End)
        {
            buffer.ResetWrittenCount();
            json.Reset();
            var problem = kind == LineKind.TooLong
                ? new InputError(InputErrorCodes.LineTooLong, $"the request is longer than {maxLineBytes} bytes", reader.LineNumber)
                : Convert(reader.Current, endpoint, model, json) is { } found ? found with { Line = reader.LineNumber } : null;
            if (problem is not null)
            {
                errors.Add(problem);
                if (errors.Count == MaxErrors)
                {
                    throw RequestProblems.Rejected(errors, unlisted: null, refusal);
                }
            }
            else
            {
                json.Flush();
            }

            buffer.Write("\n"u8);
            await output.WriteAsync(buffer.WrittenMemory, cancellationToken);
        }

        return errors;
    }

    private static InputError? Convert(ReadOnlyMemory<byte> element, string endpoint, string? model, Utf8JsonWriter json)
    {
        using var document = JsonDocument.Parse(element);
        var request = document.RootElement;
        if (request.ValueKind != JsonValueKind.Object)
        {
            return Problem(InputErrorCodes.InvalidBody, "a request must be an object with \"custom_id\" and \"prompt\" or \"body\"");
        }

        JsonElement? customId = null, prompt = null, body = null;
        foreach (var field in request.EnumerateObject())
        {
            switch (field.Name)
            {
                case "custom_id":
                    customId = field.Value;
                    break;
                case "prompt":
                    prompt = field.Value;
                    break;
                case "body":
                    body = field.Value;
                    break;
                default:
                    return Problem(InputErrorCodes.InvalidBody, $"unknown field \"{field.Name}\"; a request has \"custom_id\" and \"prompt\" or \"body\"");
            }
        }

        if (customId is not { ValueKind: JsonValueKind.String })
        {
            return Problem(InputErrorCodes.MissingCustomId, "\"custom_id\" is missing or not a string");
        }

        if (prompt.HasValue == body.HasValue)
        {
            return Problem(InputErrorCodes.InvalidBody, "a request has either \"prompt\" or \"body\", and one of them");
        }

        if (prompt is { ValueKind: not JsonValueKind.String })
        {
            return Problem(InputErrorCodes.InvalidBody, "\"prompt\" must be a string");
        }

        if (body is { ValueKind: not JsonValueKind.Object })
        {
            return Problem(InputErrorCodes.InvalidBody, "\"body\" must be an object");
        }

        json.WriteStartObject();
        json.WritePropertyName("custom_id");
        customId.Value.WriteTo(json);
        json.WriteString("method", "POST");
        json.WriteString("url", endpoint);
        json.WriteStartObject("body");
        if (model is not null && (body is null || !body.Value.TryGetProperty("model", out _)))
        {
            json.WriteString("model", model);
        }

        if (body is { } given)
        {
            foreach (var field in given.EnumerateObject())
            {
                field.WriteTo(json);
            }
        }
        else
        {
            WritePrompt(json, endpoint, prompt!.Value);
        }

        json.WriteEndObject();
        json.WriteEndObject();
        return null;
    }

    private static InputError Problem(string code, string message) => new(code, message, null);

    private static void WritePrompt(Utf8JsonWriter json, string endpoint, JsonElement prompt)
    {
        switch (endpoint)
        {
            case BatchEndpoints.Embeddings or BatchEndpoints.Responses:
                json.WritePropertyName("input");
                prompt.WriteTo(json);
                break;
            case BatchEndpoints.Completions:
                json.WritePropertyName("prompt");
                prompt.WriteTo(json);
                break;
            default:
                if (endpoint == BatchEndpoints.Messages)
                {
                    json.WriteNumber("max_tokens", DefaultMaxTokens);
                }

                json.WriteStartArray("messages");
                json.WriteStartObject();
                json.WriteString("role", "user");
                json.WritePropertyName("content");
                prompt.WriteTo(json);
                json.WriteEndObject();
                json.WriteEndArray();
                break;
        }
    }
}
