using System.Text.Json;

namespace Shepherd.Engine.Formats;

/// <summary>One valid input line. <see cref="Body"/> is a slice of the line, exactly as written.</summary>
internal readonly record struct ParsedLine(
    InputFormat Format,
    string CustomId,
    string Url,
    ReadOnlyMemory<byte> Body,
    string Model,
    int? MaxOutputTokens);

/// <summary>
/// Parses one batch input line in either dialect. It reads only what the engine needs (the
/// custom id, url, model and output limit) and keeps the request body as the exact bytes the
/// user wrote, so the upstream receives every field unchanged.
/// </summary>
internal static class InputLineParser
{
    /// <summary>OpenAI does not document a limit; this keeps ids printable in one terminal line.</summary>
    public const int MaxOpenAICustomIdLength = 512;

    /// <summary>Anthropic's documented limit for a custom id.</summary>
    public const int MaxAnthropicCustomIdLength = 64;

    private static readonly JsonReaderOptions ReaderOptions = new() { MaxDepth = 128 };

    /// <summary>
    /// Parses <paramref name="line"/>. Returns null and sets <paramref name="parsed"/> when the
    /// line is valid; otherwise returns the error (its <see cref="InputError.Line"/> is null: the
    /// caller knows the line number).
    /// </summary>
    public static (string Code, string Message)? TryParse(ReadOnlyMemory<byte> line, out ParsedLine parsed)
    {
        parsed = default;
        Fields fields;
        try
        {
            // A body is passed on unread, so its text is checked here: nothing downstream may meet a string it cannot decode.
            if (JsonText.Problem(line.Span, ReaderOptions, out var at) is { } notText)
            {
                return (InputErrorCodes.InvalidJsonLine, $"not valid JSON: {notText} (at byte {at + 1})");
            }

            fields = ReadFields(line.Span);
        }
        catch (JsonException ex)
        {
            return (InputErrorCodes.InvalidJsonLine, $"not valid JSON: {DescribeJsonError(ex)}");
        }

        if (fields.Problem is { } problem)
        {
            return problem;
        }

        var anthropic = fields.Params.HasValue;
        if (anthropic && (fields.BodyRange.HasValue || fields.Url is not null))
        {
            return (InputErrorCodes.InvalidBody, "a line has either \"params\" (Anthropic) or \"url\" and \"body\" (OpenAI), not both");
        }

        if (fields.CustomId is not { } customId)
        {
            return (InputErrorCodes.MissingCustomId, "\"custom_id\" is missing or not a string");
        }

        if (CheckCustomId(customId, anthropic) is { } idProblem)
        {
            return idProblem;
        }

        string url;
        (int Start, int End) bodyRange;
        if (anthropic)
        {
            url = BatchEndpoints.Messages;
            bodyRange = fields.Params!.Value;
        }
        else
        {
            if (fields.Method is not "POST")
            {
                return (InputErrorCodes.InvalidMethod, fields.Method is null
                    ? "\"method\" is missing; it must be \"POST\""
                    : $"\"method\" is \"{fields.Method}\"; it must be \"POST\"");
            }

            if (fields.Url is null)
            {
                return (InputErrorCodes.InvalidUrl, "\"url\" is missing or not a string");
            }

            if (BatchEndpoints.Find(fields.Url) is not { } known)
            {
                return (InputErrorCodes.InvalidUrl, $"\"url\" {fields.Url} is not one of {string.Join(", ", BatchEndpoints.All)}");
            }

            if (fields.BodyRange is not { } range)
            {
                return (InputErrorCodes.InvalidBody, "\"body\" is missing or not a JSON object");
            }

            url = known;
            bodyRange = range;
        }

        var bodyName = anthropic ? "params" : "body";
        if (fields.Model is not { Length: > 0 } model)
        {
            return (InputErrorCodes.MissingModel, $"\"{bodyName}.model\" is missing or not a non-empty string");
        }

        if (fields.Stream)
        {
            return (InputErrorCodes.StreamUnsupported, $"\"{bodyName}.stream\" is true; a batch returns whole answers, remove it");
        }

        if (fields.MaxTokensInvalid)
        {
            return (InputErrorCodes.InvalidBody, $"\"{bodyName}.{fields.MaxTokensName}\" must be a whole number from 0 to {int.MaxValue}");
        }

        if (url == BatchEndpoints.Messages && fields.MaxTokens is null)
        {
            return (InputErrorCodes.MissingMaxTokens, $"\"{bodyName}.max_tokens\" is required for {BatchEndpoints.Messages}");
        }

        if (fields.MayAskStructure && SchemaProblem(url, line.Span.Slice(bodyRange.Start, bodyRange.End - bodyRange.Start)) is { } unusable)
        {
            return (InputErrorCodes.InvalidBody, $"\"{bodyName}\" asks for structured output with a schema that answers cannot be checked against: {unusable}");
        }

        parsed = new ParsedLine(
            anthropic ? InputFormat.Anthropic : InputFormat.OpenAI,
            customId,
            url,
            line.Slice(bodyRange.Start, bodyRange.End - bodyRange.Start),
            model,
            fields.MaxTokens);
        return null;
    }

    /// <summary>Why the schema a request asks its answer to fit is none, or null (also for a request that asks for none).</summary>
    private static string? SchemaProblem(string url, ReadOnlySpan<byte> body)
    {
        try
        {
            StructuredOutput.Of(url, body);
            return null;
        }
        catch (Json.Schema.JsonSchemaException ex)
        {
            return ex.Message;
        }
    }

    private static (string, string)? CheckCustomId(string customId, bool anthropic)
    {
        if (customId.Length == 0)
        {
            return (InputErrorCodes.InvalidCustomId, "\"custom_id\" is empty");
        }

        if (!anthropic)
        {
            return customId.Length > MaxOpenAICustomIdLength
                ? (InputErrorCodes.InvalidCustomId, $"\"custom_id\" is {customId.Length} characters long; at most {MaxOpenAICustomIdLength} are allowed")
                : null;
        }

        if (customId.Length > MaxAnthropicCustomIdLength)
        {
            return (InputErrorCodes.InvalidCustomId, $"\"custom_id\" is {customId.Length} characters long; Anthropic allows at most {MaxAnthropicCustomIdLength}");
        }

        foreach (var c in customId)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '_' or '-'))
            {
                return (InputErrorCodes.InvalidCustomId, "\"custom_id\" may hold only letters, digits, '_' and '-' in an Anthropic batch");
            }
        }

        return null;
    }

    private static string DescribeJsonError(JsonException ex) =>
        ex.BytePositionInLine is { } position ? $"{FirstSentence(ex.Message)} (at byte {position + 1})" : FirstSentence(ex.Message);

    private static string FirstSentence(string message)
    {
        // The reader appends its own position text ("LineNumber: 0 | BytePositionInLine: 12."),
        // which would repeat the position given above in a less useful form.
        var cut = message.IndexOf(" LineNumber:", StringComparison.Ordinal);
        return (cut > 0 ? message[..cut] : message).TrimEnd('.', ' ');
    }

    private static Fields ReadFields(ReadOnlySpan<byte> line)
    {
        var reader = new Utf8JsonReader(line, ReaderOptions);
        var fields = new Fields();
        if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
        {
            fields.Problem = (InputErrorCodes.InvalidJsonLine, "the line is not a JSON object");
            return fields;
        }

        var seen = Seen.None;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            var name = KnownProperty(ref reader);
            reader.Read();
            if (name != Seen.None)
            {
                if ((seen & name) != 0)
                {
                    fields.Problem = (InputErrorCodes.InvalidJsonLine, $"the property \"{NameOf(name)}\" appears twice");
                    return fields;
                }

                seen |= name;
            }

            switch (name)
            {
                case Seen.CustomId:
                    fields.CustomId = reader.TokenType == JsonTokenType.String ? reader.GetString() : null;
                    break;
                case Seen.Method:
                    fields.Method = reader.TokenType == JsonTokenType.String ? reader.GetString() : null;
                    break;
                case Seen.Url:
                    fields.Url = reader.TokenType == JsonTokenType.String ? reader.GetString() : null;
                    break;
                case Seen.Body or Seen.Params:
                    if (reader.TokenType == JsonTokenType.StartObject)
                    {
                        var start = (int)reader.TokenStartIndex;
                        ReadBodyFields(ref reader, ref fields);
                        var range = (start, (int)reader.BytesConsumed);
                        if (name == Seen.Body)
                        {
                            fields.BodyRange = range;
                        }
                        else
                        {
                            fields.Params = range;
                        }
                    }
                    else
                    {
                        reader.Skip();
                        fields.Problem ??= (InputErrorCodes.InvalidBody, $"\"{(name == Seen.Body ? "body" : "params")}\" must be a JSON object");
                    }

                    break;
                default:
                    reader.Skip();
                    break;
            }
        }

        if (reader.TokenType != JsonTokenType.EndObject || reader.CurrentDepth != 0)
        {
            fields.Problem = (InputErrorCodes.InvalidJsonLine, "the line is not a JSON object");
            return fields;
        }

        if (reader.Read())
        {
            fields.Problem = (InputErrorCodes.InvalidJsonLine, "the line holds more than one JSON value");
        }

        return fields;
    }

    private static void ReadBodyFields(ref Utf8JsonReader reader, ref Fields fields)
    {
        var depth = reader.CurrentDepth;
        while (reader.Read() && reader.CurrentDepth > depth)
        {
            // Every value is skipped whole below, so each token here is a property name of the body itself.
            var model = reader.ValueTextEquals("model"u8);
            var stream = !model && reader.ValueTextEquals("stream"u8);
            var maxTokens = !model && !stream && (reader.ValueTextEquals("max_tokens"u8)
                || reader.ValueTextEquals("max_completion_tokens"u8)
                || reader.ValueTextEquals("max_output_tokens"u8));
            var name = maxTokens ? reader.GetString() : null;
            fields.MayAskStructure |= !model && !stream && !maxTokens
                && (reader.ValueTextEquals("response_format"u8) || reader.ValueTextEquals("text"u8) || reader.ValueTextEquals("tool_choice"u8));
            reader.Read();
            if (model)
            {
                fields.Model = reader.TokenType == JsonTokenType.String ? reader.GetString() : null;
            }
            else if (stream)
            {
                fields.Stream = reader.TokenType == JsonTokenType.True;
            }
            else if (maxTokens && reader.TokenType == JsonTokenType.Number && reader.TryGetInt32(out var max) && max >= 0)
            {
                fields.MaxTokens = max;
            }
            else if (maxTokens && reader.TokenType != JsonTokenType.Null)
            {
                fields.MaxTokensInvalid = true;
                fields.MaxTokensName = name;
            }

            reader.Skip();
        }
    }

    private static Seen KnownProperty(ref Utf8JsonReader reader) =>
        reader.ValueTextEquals("custom_id"u8) ? Seen.CustomId
        : reader.ValueTextEquals("method"u8) ? Seen.Method
        : reader.ValueTextEquals("url"u8) ? Seen.Url
        : reader.ValueTextEquals("body"u8) ? Seen.Body
        : reader.ValueTextEquals("params"u8) ? Seen.Params
        : Seen.None;

    private static string NameOf(Seen name) => name switch
    {
        Seen.CustomId => "custom_id",
        Seen.Method => "method",
        Seen.Url => "url",
        Seen.Body => "body",
        _ => "params",
    };

    [Flags]
    private enum Seen
    {
        None = 0,
        CustomId = 1,
        Method = 2,
        Url = 4,
        Body = 8,
        Params = 16,
    }

    private struct Fields
    {
        public string? CustomId;
        public string? Method;
        public string? Url;
        public (int Start, int End)? BodyRange;
        public (int Start, int End)? Params;
        public string? Model;
        public bool Stream;
        public int? MaxTokens;
        public bool MaxTokensInvalid;
        public string? MaxTokensName;

        /// <summary>The body has a field by which a request asks for structured output (<c>response_format</c>, <c>text</c>, <c>tool_choice</c>).</summary>
        public bool MayAskStructure;
        public (string Code, string Message)? Problem;
    }
}
