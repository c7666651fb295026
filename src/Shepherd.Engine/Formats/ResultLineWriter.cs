using System.Buffers;
using System.Text.Json;
using Shepherd.Engine.Batches;
using Shepherd.Engine.Model;

namespace Shepherd.Engine.Formats;

/// <summary>
/// Writes result lines in the dialect of the input: OpenAI output and error lines, or
/// Anthropic result lines. Answer bodies are embedded as the upstream sent them.
/// </summary>
public sealed class ResultLineWriter : IDisposable
{
    private readonly ArrayBufferWriter<byte> _buffer = new(4096);
    private readonly Utf8JsonWriter _json;
    private readonly InputFormat _format;
    private readonly string _batchId;

    /// <summary>Creates a writer of <paramref name="format"/> lines for the batch <paramref name="batchId"/>.</summary>
    public ResultLineWriter(InputFormat format, string batchId)
    {
        _format = format;
        _batchId = batchId;
        _json = new Utf8JsonWriter(_buffer, JsonWriterExtensions.Options with { SkipValidation = true });
    }

    /// <summary>Writes the line of an ended item to <paramref name="destination"/>, newline included.</summary>
    public ValueTask WriteAsync(Stream destination, ItemResult item, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(destination);
        Format(item);
        _buffer.Write("\n"u8);
        return destination.WriteAsync(_buffer.WrittenMemory, cancellationToken);
    }

    /// <summary>The line of an ended item as one JSON object, without a newline; valid until the next call.</summary>
    public ReadOnlyMemory<byte> Format(ItemResult item)
    {
        ArgumentNullException.ThrowIfNull(item);
        var result = item.State switch
        {
            ItemState.Cancelled => new AttemptResult { ErrorCode = "batch_cancelled", ErrorMessage = "The batch was cancelled before this request was sent." },
            ItemState.Expired => new AttemptResult { ErrorCode = "batch_expired", ErrorMessage = "The batch's completion window ended before this request was sent." },
            _ => item.Result ?? throw new ArgumentException($"Item {item.CustomId} has not ended.", nameof(item)),
        };
        _buffer.ResetWrittenCount();
        _json.Reset();
        if (_format == InputFormat.Anthropic)
        {
            WriteAnthropic(item, result);
        }
        else
        {
            WriteOpenAI(item, result);
        }

        _json.Flush();
        return _buffer.WrittenMemory;
    }

    private void WriteOpenAI(ItemResult item, AttemptResult result)
    {
        _json.WriteStartObject();
        _json.WriteString("id"u8, BatchIds.RequestId(_batchId, item.Line));
        _json.WriteString("custom_id"u8, item.CustomId);
        if (result.StatusCode is { } status)
        {
            _json.WriteStartObject("response"u8);
            _json.WriteNumber("status_code"u8, status);
            WriteStringOrNull("request_id"u8, result.RequestId);
            _json.WritePropertyName("body"u8);
            _json.WriteRawValue(result.Body ?? "{}"u8.ToArray(), skipInputValidation: true);
            _json.WriteEndObject();
            if (result.ErrorCode is null)
            {
                _json.WriteNull("error"u8);
            }
            else
            {
                // An answer that came but did not fit what was asked: the answer, and why it failed.
                _json.WriteStartObject("error"u8);
                _json.WriteString("code"u8, result.ErrorCode);
                _json.WriteString("message"u8, result.ErrorMessage);
                _json.WriteEndObject();
            }
        }
        else
        {
            _json.WriteNull("response"u8);
            _json.WriteStartObject("error"u8);
            _json.WriteString("code"u8, result.ErrorCode);
            _json.WriteString("message"u8, result.ErrorMessage);
            _json.WriteEndObject();
        }

        WriteCached(result);
        _json.WriteEndObject();
    }

    /// <summary>Shepherd's own mark on an answer not sent for again (kept from an earlier run); the official formats take it as an extra field.</summary>
    private void WriteCached(AttemptResult result)
    {
        if (result.Cached)
        {
            _json.WriteBoolean("cached"u8, true);
        }
    }

    private void WriteAnthropic(ItemResult item, AttemptResult result)
    {
        _json.WriteStartObject();
        _json.WriteString("custom_id"u8, item.CustomId);
        _json.WriteStartObject("result"u8);
        if (item.State == ItemState.Succeeded)
        {
            _json.WriteString("type"u8, "succeeded");
            _json.WritePropertyName("message"u8);
            _json.WriteRawValue(result.Body!, skipInputValidation: true);
        }
        else if (item.State is ItemState.Cancelled or ItemState.Expired)
        {
            _json.WriteString("type"u8, item.State == ItemState.Cancelled ? "canceled" : "expired");
        }
        else
        {
            _json.WriteString("type"u8, "errored");
            _json.WriteStartObject("error"u8);
            _json.WriteString("type"u8, "error");
            _json.WritePropertyName("error"u8);
            WriteAnthropicError(result);
            WriteStringOrNull("request_id"u8, result.RequestId);
            _json.WriteEndObject();
            if (result.StatusCode is not null && result.ErrorCode is not null && result.Body is { } answer)
            {
                // An answer that came but did not fit what was asked is kept beside why it failed.
                _json.WritePropertyName("message"u8);
                _json.WriteRawValue(answer, skipInputValidation: true);
            }
        }

        _json.WriteEndObject();
        WriteCached(result);
        _json.WriteEndObject();
    }

    private void WriteAnthropicError(AttemptResult result)
    {
        if (result.StatusCode is not { } status)
        {
            WriteError("api_error", $"{result.ErrorCode}: {result.ErrorMessage}");
            return;
        }

        if (result.ErrorCode is { } code)
        {
            WriteError(code, result.ErrorMessage ?? code);
            return;
        }

        using var document = JsonDocument.Parse(result.Body ?? "{}"u8.ToArray());
        var root = document.RootElement;
        if (root.ValueKind == JsonValueKind.Object
            && root.TryGetProperty("type", out var envelope) && envelope.ValueKind == JsonValueKind.String && envelope.ValueEquals("error")
            && root.TryGetProperty("error", out var error)
            && error.ValueKind == JsonValueKind.Object
            && error.TryGetProperty("type", out var type) && type.ValueKind == JsonValueKind.String)
        {
            // An Anthropic error envelope: keep the provider's own error object.
            error.WriteTo(_json);
            return;
        }

        var message = root.ValueKind == JsonValueKind.Object && root.TryGetProperty("error", out var other)
            && other.ValueKind == JsonValueKind.Object && other.TryGetProperty("message", out var text) && text.ValueKind == JsonValueKind.String
            ? text.GetString()!
            : root.GetRawText();
        WriteError(AnthropicErrorType(status), message);
    }

    private void WriteError(string type, string message)
    {
        _json.WriteStartObject();
        _json.WriteString("type"u8, type);
        _json.WriteString("message"u8, message);
        _json.WriteEndObject();
    }

    private void WriteStringOrNull(ReadOnlySpan<byte> name, string? value)
    {
        if (value is null)
        {
            _json.WriteNull(name);
        }
        else
        {
            _json.WriteString(name, value);
        }
    }

    /// <summary>Anthropic's error type for an HTTP status.</summary>
    public static string AnthropicErrorType(int status) => status switch
    {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    };

    /// <inheritdoc />
    public void Dispose() => _json.Dispose();
}
