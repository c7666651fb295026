using System.Buffers;
using System.Globalization;
using System.Text.Json;

namespace Shepherd.Engine.Dispatch;

/// <summary>
/// The events of a streamed answer, relayed to the caller as the provider sends them: each event
/// is written and flushed as soon as it is complete, never the whole answer held. On the way the
/// usage is read (OpenAI's usage chunk, the Responses API's <c>response.completed</c>, Anthropic's
/// <c>message_start</c> and <c>message_delta</c>) to price the call, and the usage-only chunk is
/// taken out when Shepherd asked for it and the caller did not. When the caller goes away the
/// upstream response is closed, which ends the provider's work on it.
/// </summary>
public sealed class StreamRelay : IAsyncDisposable
{
    private readonly HttpResponseMessage _response;
    private readonly bool _hideUsage;
    private readonly TaskCompletionSource<(int Input, int Output, int Cached)> _ended = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _input;
    private int _output;
    private int _cached;
    private int _searched;
    private long _textBytes;

    internal StreamRelay(HttpResponseMessage response, bool hideUsage)
    {
        _response = response;
        _hideUsage = hideUsage;
    }

    /// <summary>The usage read from the events, once the relay has ended (completed, cut off, or never started).</summary>
    internal Task<(int Input, int Output, int Cached)> Ended => _ended.Task;

    /// <summary>The bytes of text the events carried (as escaped in their JSON): what a stream that reports no usage is priced by, at four a token.</summary>
    internal long TextBytes => _textBytes;

    /// <summary>Relays every event to <paramref name="destination"/>, flushing after each read; ends when the provider ends the stream or the caller leaves.</summary>
    public async Task RelayAsync(Stream destination, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(destination);
        var buffer = ArrayPool<byte>.Shared.Rent(16 * 1024);
        try
        {
            await using var source = await _response.Content.ReadAsStreamAsync(cancellationToken);
            var filled = 0;
            int read;
            while ((read = await source.ReadAsync(buffer.AsMemory(filled), cancellationToken)) > 0)
            {
                filled += read;
                var (passed, kept) = Pass(buffer.AsSpan(0, filled));
                if (passed > 0)
                {
                    await destination.WriteAsync(buffer.AsMemory(0, passed), cancellationToken);
                }

                // What was complete has gone (or was taken out); the start of the next event moves to the front.
                buffer.AsSpan(kept, filled - kept).CopyTo(buffer);
                filled -= kept;
                await destination.FlushAsync(cancellationToken);
                if (filled == buffer.Length)
                {
                    var larger = ArrayPool<byte>.Shared.Rent(buffer.Length * 2);
                    buffer.AsSpan(0, filled).CopyTo(larger);
                    ArrayPool<byte>.Shared.Return(buffer);
                    buffer = larger;
                }
            }

            // A last event without its blank line still goes to the caller, unless it is the usage-only chunk hidden from it.
            if (filled > 0 && (Read(buffer.AsSpan(0, filled)) || !_hideUsage))
            {
                await destination.WriteAsync(buffer.AsMemory(0, filled), cancellationToken);
                await destination.FlushAsync(cancellationToken);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
            await DisposeAsync();
        }
    }

    /// <summary>Closes the upstream response (if the relay never ran, nothing is relayed) and gives the usage read.</summary>
    public ValueTask DisposeAsync()
    {
        _response.Dispose();
        _ended.TrySetResult((_input, _output, _cached));
        return ValueTask.CompletedTask;
    }

    /// <summary>
    /// Goes through the complete events at the start of <paramref name="data"/>: those to pass on
    /// are moved to its front. Returns how many bytes to pass on and how many were complete.
    /// </summary>
    private (int Passed, int Complete) Pass(Span<byte> data)
    {
        var passed = 0;
        var start = 0;
        // An event still coming was searched up to here already: a large one read in small pieces is searched once, not once a piece.
        var searched = _searched;
        while (EventEnd(data[start..], searched) is var length and > 0)
        {
            var next = data.Slice(start, length);
            if (Read(next) || !_hideUsage)
            {
                next.CopyTo(data[passed..]);
                passed += length;
            }

            start += length;
            searched = 0;
        }

        // The last two bytes may yet begin a blank line.
        _searched = Math.Max(0, data.Length - start - 2);
        return (passed, start);
    }

    /// <summary>The length of the first complete event (up to and with its blank line), or 0 while it is incomplete.</summary>
    private static int EventEnd(ReadOnlySpan<byte> data, int from)
    {
        for (var i = NextNewline(data, Math.Min(from, data.Length)); i >= 0 && i + 1 < data.Length; i = NextNewline(data, i + 1))
        {
            if (data[i + 1] == '\n')
            {
                return i + 2;
            }

            if (data[i + 1] == '\r' && i + 2 < data.Length && data[i + 2] == '\n')
            {
                return i + 3;
            }
        }

        return 0;
    }

    private static int NextNewline(ReadOnlySpan<byte> data, int from) => data[from..].IndexOf((byte)'\n') is var at and >= 0 ? from + at : -1;

    /// <summary>Reads the usage an event carries; returns false for an event that carries nothing but usage (OpenAI's last chunk), which may be taken out.</summary>
    private bool Read(ReadOnlySpan<byte> sse)
    {
        var keep = true;
        foreach (var line in new SseData(sse))
        {
            keep &= Scan(line);
        }

        return keep;
    }

    /// <summary>
    /// Reads one event's JSON in one pass, without building it: the usage at its top (OpenAI
    /// chunks, Anthropic's message_delta) or in its message or response, and the length of the
    /// text it carries (a fallback for providers whose streams report no usage). Returns false
    /// for a chunk that carries nothing but usage (no choices).
    /// </summary>
    private bool Scan(ReadOnlySpan<byte> json)
    {
        var usage = false;
        var noChoices = false;
        try
        {
            var reader = new Utf8JsonReader(json, new JsonReaderOptions { MaxDepth = 256 });
            var inHolder = false;
            while (reader.Read())
            {
                if (reader.TokenType != JsonTokenType.PropertyName)
                {
                    continue;
                }

                var depth = reader.CurrentDepth;
                if (depth == 1)
                {
                    inHolder = reader.ValueTextEquals("message"u8) || reader.ValueTextEquals("response"u8);
                }

                var isUsage = (depth == 1 || (depth == 2 && inHolder)) && reader.ValueTextEquals("usage"u8);
                var isChoices = depth == 1 && reader.ValueTextEquals("choices"u8);
                var isText = reader.ValueTextEquals("content"u8) || reader.ValueTextEquals("text"u8) || reader.ValueTextEquals("delta"u8);
                reader.Read();
                if (isUsage && reader.TokenType == JsonTokenType.StartObject)
                {
                    var from = (int)reader.TokenStartIndex;
                    reader.Skip();
                    Count(json[from..(int)reader.BytesConsumed]);
                    usage = true;
                }
                else if (isChoices && reader.TokenType == JsonTokenType.StartArray)
                {
                    reader.Read();
                    noChoices = reader.TokenType == JsonTokenType.EndArray;
                }
                else if (isText && reader.TokenType == JsonTokenType.String)
                {
                    _textBytes += reader.ValueSpan.Length;
                }
            }
        }
        catch (JsonException)
        {
            // Not JSON ([DONE], or a provider's own words): passed on as it came, and nothing counted.
        }

        return !(usage && noChoices);
    }

    /// <summary>Counts a usage object: each figure is the most any event gave, since the providers' later events repeat or grow earlier ones.</summary>
    private void Count(ReadOnlySpan<byte> usage)
    {
        var (input, output, cached) = UsageReader.ReadUsage(usage);
        _input = Math.Max(_input, input);
        _output = Math.Max(_output, output);
        _cached = Math.Max(_cached, cached);
    }

    /// <summary>The body the dispatcher prices a streamed answer by: its usage, as an answer read whole would carry it.</summary>
    internal static byte[] UsageBody((int Input, int Output, int Cached) usage) => System.Text.Encoding.UTF8.GetBytes(string.Create(
        CultureInfo.InvariantCulture,
        $"{{\"usage\":{{\"input_tokens\":{usage.Input - usage.Cached},\"cache_read_input_tokens\":{usage.Cached},\"output_tokens\":{usage.Output}}}}}"));

    /// <summary>The <c>data:</c> payloads of one event.</summary>
    private readonly ref struct SseData(ReadOnlySpan<byte> sse)
    {
        private readonly ReadOnlySpan<byte> _sse = sse;

        public Enumerator GetEnumerator() => new(_sse);

        public ref struct Enumerator(ReadOnlySpan<byte> sse)
        {
            private ReadOnlySpan<byte> _rest = sse;

            public ReadOnlySpan<byte> Current { get; private set; }

            public bool MoveNext()
            {
                while (!_rest.IsEmpty)
                {
                    var end = _rest.IndexOf((byte)'\n');
                    var line = (end < 0 ? _rest : _rest[..end]).TrimEnd((byte)'\r');
                    _rest = end < 0 ? [] : _rest[(end + 1)..];
                    if (line.StartsWith("data:"u8))
                    {
                        Current = line[5..].TrimStart((byte)' ');
                        return true;
                    }
                }

                return false;
            }
        }
    }
}
