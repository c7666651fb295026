using System.Globalization;
using System.Text.Json;

namespace Shepherd.Engine.Formats;

/// <summary>
/// Why an input line (or the whole input) was rejected. <see cref="Line"/> is 1-based and null
/// only for errors about the whole input, such as an empty file.
/// </summary>
/// <param name="Code">A stable machine-readable code, such as <c>duplicate_custom_id</c>.</param>
/// <param name="Message">What is wrong, in words a user can act on.</param>
/// <param name="Line">The 1-based line number, when the error belongs to one line.</param>
public sealed record InputError(string Code, string Message, long? Line)
{
    /// <summary>Line <paramref name="line"/> repeats the custom id of line <paramref name="firstLine"/>.</summary>
    public static InputError Duplicate(string customId, long firstLine, long line) =>
        new(InputErrorCodes.DuplicateCustomId, $"custom_id \"{customId}\" is already used on line {firstLine}", line);

    /// <summary>The last entry of a list that could not hold every problem: how many more there were.</summary>
    public static InputError Unlisted(long count) =>
        new(InputErrorCodes.MoreErrors, string.Create(CultureInfo.InvariantCulture, $"and {count:N0} more problem{(count == 1 ? "" : "s")} on later lines, not listed"), null);

    /// <summary>The error as one line of text: <c>line 7: message (code)</c>.</summary>
    public override string ToString() =>
        Line is { } line ? $"line {line}: {Message} ({Code})" : $"{Message} ({Code})";

    /// <summary>Writes <c>{"code","message","line"}</c> (with <c>"param":null</c> between, as the OpenAI Batch object has it).</summary>
    public void WriteTo(Utf8JsonWriter json, bool withParam = false)
    {
        ArgumentNullException.ThrowIfNull(json);
        json.WriteStartObject();
        json.WriteString("code", Code);
        json.WriteString("message", Message);
        if (withParam)
        {
            json.WriteNull("param");
        }

        if (Line is { } line)
        {
            json.WriteNumber("line", line);
        }
        else
        {
            json.WriteNull("line");
        }

        json.WriteEndObject();
    }
}

/// <summary>The stable codes of <see cref="InputError"/>.</summary>
public static class InputErrorCodes
{
    /// <summary>The line is not one well-formed JSON object.</summary>
    public const string InvalidJsonLine = "invalid_json_line";

    /// <summary>The line has no <c>custom_id</c>.</summary>
    public const string MissingCustomId = "missing_custom_id";

    /// <summary>The <c>custom_id</c> is empty, too long or has characters the dialect forbids.</summary>
    public const string InvalidCustomId = "invalid_custom_id";

    /// <summary>Another line already used this <c>custom_id</c>.</summary>
    public const string DuplicateCustomId = "duplicate_custom_id";

    /// <summary>The <c>method</c> is not POST.</summary>
    public const string InvalidMethod = "invalid_method";

    /// <summary>The <c>url</c> is missing or not one Shepherd serves.</summary>
    public const string InvalidUrl = "invalid_url";

    /// <summary>The line's <c>url</c> differs from the batch's.</summary>
    public const string UrlMismatch = "url_mismatch";

    /// <summary>The line is written in the other dialect than the first line.</summary>
    public const string FormatMismatch = "format_mismatch";

    /// <summary>The request body (<c>body</c> or <c>params</c>) is missing or not an object.</summary>
    public const string InvalidBody = "invalid_body";

    /// <summary>The request body has no <c>model</c>.</summary>
    public const string MissingModel = "missing_model";

    /// <summary>The request asks for a streamed answer, which a batch cannot return.</summary>
    public const string StreamUnsupported = "stream_unsupported";

    /// <summary>An Anthropic request without <c>max_tokens</c>.</summary>
    public const string MissingMaxTokens = "missing_max_tokens";

    /// <summary>The request names a model no upstream serves.</summary>
    public const string ModelNotServed = "model_not_served";

    /// <summary>The line is longer than the configured limit.</summary>
    public const string LineTooLong = "line_too_long";

    /// <summary>The input holds no request.</summary>
    public const string EmptyFile = "empty_file";

    /// <summary>Not a problem of its own: how many problems a list left out.</summary>
    public const string MoreErrors = "more_errors";

    /// <summary>The prompt is longer than the model's context window.</summary>
    public const string ContextLengthExceeded = "context_length_exceeded";

    /// <summary>The input holds more requests than the configured limit.</summary>
    public const string TooManyTasks = "too_many_tasks";
}
