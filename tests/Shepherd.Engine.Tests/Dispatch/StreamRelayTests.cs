using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using CsCheck;
using Shepherd.Engine.Dispatch;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Engine.Tests.Dispatch;

/// <summary>
/// The relay of a streamed answer, over the simulator's streams in each dialect read in pieces
/// of any size: the caller gets what the provider sent byte for byte, less only the usage chunk
/// Shepherd asked for and the caller did not; the usage read is the usage the provider reported;
/// and a caller that leaves ends the relay and closes the upstream response. A failing draw
/// prints its case and the seed that replays it.
/// </summary>
public sealed class StreamRelayTests
{
    /// <summary>The model, which the streams repeat: in 2-, 3- and 4-byte UTF-8, sent raw as providers send text.</summary>
    private const string Model = "shepherd-é-✓-🐑";

    private static readonly string[] PromptWords = ["rate", "this", "über", "product", "très", "bien", "✓", "🐑"];

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>The streams providers send: OpenAI's chat chunks without and with the usage chunk, its completion chunks with it, the Responses API's events, Anthropic's.</summary>
    private enum Dialect
    {
        Chat,
        ChatWithUsage,
        CompletionsWithUsage,
        Responses,
        Messages,
    }

    /// <summary>How a caller leaves: the write fails as on a closed connection, or its token is cancelled in the write or after it.</summary>
    private enum Leaving
    {
        WriteFails,
        CancelledInWrite,
        CancelledAfterWrite,
    }

    /// <summary>A streamed answer to ask the simulator for: its dialect, its prompt's length, its output limit, and whether (for Anthropic) its system prompt was cached by a call before.</summary>
    private sealed record Answer(Dialect Dialect, int PromptWords, int MaxTokens, bool CacheWarm);

    private static readonly Gen<Answer> Answers = Gen.Select(Gen.Enum<Dialect>(), Gen.Int[1, 200], Gen.Int[1, 80], Gen.Bool, (dialect, words, maxTokens, warm) => new Answer(dialect, words, maxTokens, warm));

    /// <summary>
    /// The sizes of the pieces the provider's bytes arrive in, taken in turn: mostly a few bytes,
    /// so that pieces end inside "\n\n", "\r\n\r\n" and multi-byte characters, some of many kilobytes.
    /// </summary>
    private static readonly Gen<int[]> Pieces = Gen.Frequency((6, Gen.Int[1, 3]), (3, Gen.Int[4, 300]), (1, Gen.Int[300, 40_000])).Array[1, 12];

    private static readonly Gen<string> Newlines = Gen.Bool.Select(crlf => crlf ? "\r\n" : "\n");

    [Theory]
    [InlineData("\n")]
    [InlineData("\r\n")]
    public async Task AnyStream_InAnyPieces_ReachesTheCallerByteForByte_LessOnlyAHiddenUsageChunk_AndItsUsageIsRead(string newline)
    {
        await Gen.Select(Answers, Pieces, Gen.Bool).SampleAsync(async (answer, pieces, hideUsage) =>
        {
            var events = await EventsAsync(answer, newline);

            await AssertRelayedAsync(events, pieces, hideUsage);
        }, iter: 300);
    }

    [Fact]
    public async Task ALastEvent_WithoutItsBlankLine_IsPassedOnStill()
    {
        // The provider stops after any event, and its last newline or two never come.
        await Gen.Select(Answers, Pieces, Gen.Bool, Newlines, Gen.Int[0, 1000], Gen.Bool).SampleAsync(async (answer, pieces, hideUsage, newline, cut, bare) =>
        {
            var sent = await EventsAsync(answer, newline);
            var events = sent.Take(1 + (cut % sent.Count)).ToList();
            events[^1] = events[^1][..^(newline.Length * (bare ? 2 : 1))];

            await AssertRelayedAsync(events, pieces, hideUsage);
        }, iter: 300);
    }

    [Fact]
    public async Task AnEventLargerThanTheFirstBuffer_IsRelayedWhole()
    {
        // Any event, and the one that reports the usage, grow past the relay's first 16 KB.
        await Gen.Select(Answers, Pieces, Gen.Bool, Gen.Int[16 * 1024, 48 * 1024], Gen.Int[0, 1000]).SampleAsync(async (answer, pieces, hideUsage, size, at) =>
        {
            var events = await EventsAsync(answer, "\n");
            var json = Enumerable.Range(0, events.Count).Where(i => Data(events[i]).Any()).ToList();
            var usage = events.FindLastIndex(e => Encoding.UTF8.GetString(e).Contains("\"usage\":{", StringComparison.Ordinal));
            foreach (var i in new[] { json[at % json.Count], usage }.Where(i => i >= 0).Distinct())
            {
                events[i] = Padded(events[i], size);
            }

            Assert.Contains(events, e => e.Length > 16 * 1024);
            await AssertRelayedAsync(events, pieces, hideUsage);
        }, iter: 100);
    }

    [Fact]
    public async Task ACallerThatLeaves_EndsTheRelay_ClosesTheUpstreamResponse_AndLeavesTheUsageReadSoFar()
    {
        // The caller leaves at the write that would take it past any of the bytes it is due.
        await Gen.Select(Answers, Pieces, Gen.Bool, Gen.Int[0, int.MaxValue], Gen.Enum<Leaving>()).SampleAsync(async (answer, pieces, hideUsage, stay, how) =>
        {
            var events = await EventsAsync(answer, "\n");
            var due = Relayed(events, hideUsage);
            var (relay, body) = Open(events, pieces, hideUsage);
            using var aborted = new CancellationTokenSource();
            using var caller = new LeavingCaller(body, stay % due.Length, how, aborted);

            var left = await Record.ExceptionAsync(() => relay.RelayAsync(caller, aborted.Token));

            Assert.True(left is IOException or OperationCanceledException, $"the relay ended with {left?.ToString() ?? "no exception"}");
            Assert.True(body.Disposed, "the upstream body is open");
            Assert.True(body.ContentDisposed, "the upstream response is open");
            Assert.True(relay.Ended.IsCompletedSuccessfully, "the relay's usage is not given");
            var got = caller.ToArray();
            Assert.Equal(due[..got.Length], got);
            AssertPassedOnAtOnce(events, hideUsage, caller);
            // What was read is the events whole in the bytes the provider gave, whether or not they reached the caller.
            Assert.Equal(Reported(events.Take(Arrived(events, body.Given))), await relay.Ended);
        }, iter: 300);
    }

    /// <summary>Relays <paramref name="events"/>, arriving in <paramref name="pieces"/>, to a caller that stays: it gets them all but a hidden usage chunk, the usage they report is read, and the upstream response is closed.</summary>
    private static async Task AssertRelayedAsync(List<byte[]> events, int[] pieces, bool hideUsage)
    {
        var (relay, body) = Open(events, pieces, hideUsage);
        using var caller = new WatchingCaller(body);

        await relay.RelayAsync(caller, Ct);

        Assert.Equal(Relayed(events, hideUsage), caller.ToArray());
        Assert.NotEmpty(caller.Flushes);
        AssertPassedOnAtOnce(events, hideUsage, caller);
        Assert.Equal(Reported(events), await relay.Ended);
        Assert.True(body.Disposed && body.ContentDisposed, "the upstream response is open");
    }

    /// <summary>
    /// At every flush the caller holds every event (but a hidden usage chunk) that had come whole
    /// with its blank line, and no part of one still coming: no event is held back or cut.
    /// </summary>
    private static void AssertPassedOnAtOnce(List<byte[]> events, bool hideUsage, WatchingCaller caller)
    {
        var due = events.Select(e => hideUsage && Data(e).Any(IsUsageOnly) ? 0 : e.Length).ToArray();
        foreach (var (given, held) in caller.Flushes)
        {
            var arrived = Arrived(events, given);
            // A last event without its blank line is whole only when the provider ends the stream.
            var whole = arrived == events.Count && !events[^1].AsSpan().EndsWith("\n\n"u8) && !events[^1].AsSpan().EndsWith("\n\r\n"u8) ? arrived - 1 : arrived;
            Assert.InRange(held, due.Take(whole).Sum(), due.Take(arrived).Sum());
        }
    }

    /// <summary>How many of the events have come to their last byte in the first <paramref name="given"/> bytes.</summary>
    private static int Arrived(List<byte[]> events, int given)
    {
        var count = 0;
        for (var end = 0; count < events.Count && (end += events[count].Length) <= given; count++)
        {
        }

        return count;
    }

    /// <summary>A relay of the provider's response whose body is <paramref name="events"/>, arriving in <paramref name="pieces"/>.</summary>
    private static (StreamRelay Relay, ProviderBody Body) Open(List<byte[]> events, int[] pieces, bool hideUsage)
    {
        var body = new ProviderBody([.. events.SelectMany(e => e)], pieces);
        return (new StreamRelay(new HttpResponseMessage { Content = body.Content }, hideUsage), body);
    }

    /// <summary>The simulator's events for <paramref name="answer"/>, with the model's name raw and lines ended by <paramref name="newline"/>.</summary>
    private static async Task<List<byte[]>> EventsAsync(Answer answer, string newline)
    {
        var simulator = Simulators.Create();
        var request = new SimulatedRequest("POST", Path(answer.Dialect), Body(answer), "Bearer k");
        if (answer.CacheWarm)
        {
            await simulator.HandleAsync(request, Ct);
        }

        var response = await simulator.HandleAsync(request, Ct);
        Assert.Equal((200, "text/event-stream"), (response.StatusCode, response.ContentType));
        var escaped = JsonEncodedText.Encode(Model).ToString();
        // One event each: the simulator sends a stream's end (several events) in one write.
        var events = Encoding.UTF8.GetString(response.Body).Split("\n\n", StringSplitOptions.RemoveEmptyEntries)
            .Select(e => (e + "\n\n").Replace(escaped, Model, StringComparison.Ordinal).Replace("\n", newline, StringComparison.Ordinal)).ToList();
        Assert.Contains(events, e => e.Contains(Model, StringComparison.Ordinal));
        var bytes = events.Select(Encoding.UTF8.GetBytes).ToList();
        // Anthropic's input is read from the cache when a call before wrote it there.
        Assert.Equal(answer is { Dialect: Dialect.Messages, CacheWarm: true }, Reported(bytes).Cached > 0);
        return bytes;
    }

    private static string Path(Dialect dialect) => dialect switch
    {
        Dialect.CompletionsWithUsage => "/v1/completions",
        Dialect.Responses => "/v1/responses",
        Dialect.Messages => "/v1/messages",
        _ => "/v1/chat/completions",
    };

    private static byte[] Body(Answer answer)
    {
        var prompt = string.Join(' ', Enumerable.Range(0, answer.PromptWords).Select(i => PromptWords[i % PromptWords.Length]));
        JsonNode Messages() => new JsonArray(new JsonObject { ["role"] = "user", ["content"] = prompt });
        var body = new JsonObject { ["model"] = Model, ["stream"] = true };
        switch (answer.Dialect)
        {
            case Dialect.Responses:
                body["input"] = prompt;
                body["max_output_tokens"] = answer.MaxTokens;
                break;
            case Dialect.Messages:
                body["system"] = new JsonArray(new JsonObject { ["type"] = "text", ["text"] = "Answer in a few words, in the reader's language.", ["cache_control"] = new JsonObject { ["type"] = "ephemeral" } });
                body["messages"] = Messages();
                body["max_tokens"] = answer.MaxTokens;
                break;
            default:
                body[answer.Dialect == Dialect.CompletionsWithUsage ? "prompt" : "messages"] = answer.Dialect == Dialect.CompletionsWithUsage ? prompt : Messages();
                body["max_tokens"] = answer.MaxTokens;
                if (answer.Dialect != Dialect.Chat)
                {
                    body["stream_options"] = new JsonObject { ["include_usage"] = true };
                }

                break;
        }

        return Encoding.UTF8.GetBytes(body.ToJsonString());
    }

    /// <summary>An event whose JSON starts with a <c>padding</c> string of <paramref name="size"/> characters, most of them multi-byte.</summary>
    private static byte[] Padded(byte[] sse, int size)
    {
        var padding = string.Concat(Enumerable.Repeat("é✓🐑 ab", (size / 7) + 1))[..size];
        return Encoding.UTF8.GetBytes(Encoding.UTF8.GetString(sse).Replace("data: {", $"data: {{\"padding\":\"{padding}\",", StringComparison.Ordinal));
    }

    /// <summary>What the caller is due: every event, but the usage-only chunk when it is hidden.</summary>
    private static byte[] Relayed(List<byte[]> events, bool hideUsage) =>
        [.. events.Where(e => !hideUsage || !Data(e).Any(IsUsageOnly)).SelectMany(e => e)];

    /// <summary>OpenAI's last chunk when usage is asked for: no choices, only the usage.</summary>
    private static bool IsUsageOnly(JsonElement data) =>
        data.TryGetProperty("choices", out var choices) && choices.GetArrayLength() == 0
        && data.TryGetProperty("usage", out var usage) && usage.ValueKind == JsonValueKind.Object;

    /// <summary>
    /// The usage the events report, each figure as the provider last gave it: OpenAI's usage
    /// chunk; the Responses API's completed response; Anthropic's <c>message_start</c> (the input,
    /// with what was read from the cache and written to it, and a first output) and its
    /// <c>message_delta</c> (the output).
    /// </summary>
    private static (int Input, int Output, int Cached) Reported(IEnumerable<byte[]> events)
    {
        (int Input, int Output, int Cached) reported = default;
        foreach (var data in events.SelectMany(Data))
        {
            var type = data.TryGetProperty("type", out var named) ? named.GetString() : null;
            if (type == "message_start")
            {
                var usage = data.GetProperty("message").GetProperty("usage");
                var cached = usage.GetProperty("cache_read_input_tokens").GetInt32();
                reported = (usage.GetProperty("input_tokens").GetInt32() + usage.GetProperty("cache_creation_input_tokens").GetInt32() + cached, usage.GetProperty("output_tokens").GetInt32(), cached);
            }
            else if (type == "message_delta")
            {
                reported.Output = data.GetProperty("usage").GetProperty("output_tokens").GetInt32();
            }
            else if (type == "response.completed")
            {
                var usage = data.GetProperty("response").GetProperty("usage");
                reported = (usage.GetProperty("input_tokens").GetInt32(), usage.GetProperty("output_tokens").GetInt32(), 0);
            }
            else if (IsUsageOnly(data))
            {
                var usage = data.GetProperty("usage");
                reported = (usage.GetProperty("prompt_tokens").GetInt32(), usage.GetProperty("completion_tokens").GetInt32(), 0);
            }
        }

        return reported;
    }

    /// <summary>The JSON an event's <c>data:</c> lines carry (none for <c>[DONE]</c>).</summary>
    private static IEnumerable<JsonElement> Data(byte[] sse) =>
        Encoding.UTF8.GetString(sse).Split('\n').Select(line => line.TrimEnd('\r'))
            .Where(line => line.StartsWith("data: {", StringComparison.Ordinal))
            .Select(line => JsonDocument.Parse(line["data: ".Length..]).RootElement);

    /// <summary>
    /// A provider's body as the relay reads it: its bytes cut into pieces of the given sizes, taken
    /// in turn, each read giving the next piece (or as much of it as the reader's buffer holds, the
    /// rest coming with the next read). It knows when it, and the content around it, were disposed.
    /// </summary>
    private sealed class ProviderBody : MemoryStream
    {
        private readonly int[] _sizes;
        private int _begun;
        private int _rest;

        public ProviderBody(byte[] bytes, int[] sizes)
            : base(bytes, writable: false)
        {
            _sizes = sizes;
            Content = new ObservedContent(this);
        }

        /// <summary>The response content over this body.</summary>
        public HttpContent Content { get; }

        /// <summary>The bytes the provider has given so far.</summary>
        public int Given { get; private set; }

        public bool Disposed { get; private set; }

        public bool ContentDisposed { get; private set; }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (_rest == 0)
            {
                _rest = _sizes[_begun++ % _sizes.Length];
            }

            var read = await base.ReadAsync(buffer[..Math.Min(buffer.Length, _rest)], cancellationToken);
            _rest -= read;
            Given += read;
            return read;
        }

        protected override void Dispose(bool disposing)
        {
            Disposed = true;
            base.Dispose(disposing);
        }

        private sealed class ObservedContent(ProviderBody body) : StreamContent(body)
        {
            protected override void Dispose(bool disposing)
            {
                body.ContentDisposed = true;
                base.Dispose(disposing);
            }
        }
    }

    /// <summary>A caller that notes, at each flush, how many bytes it holds and how many the provider had given by then.</summary>
    private class WatchingCaller(ProviderBody body) : MemoryStream
    {
        public List<(int Given, long Held)> Flushes { get; } = [];

        public override Task FlushAsync(CancellationToken cancellationToken)
        {
            Flushes.Add((body.Given, Length));
            return base.FlushAsync(cancellationToken);
        }
    }

    /// <summary>A caller that leaves at the write that would take it past <paramref name="stay"/> bytes, in the way <paramref name="how"/> says.</summary>
    private sealed class LeavingCaller(ProviderBody body, int stay, Leaving how, CancellationTokenSource aborted) : WatchingCaller(body)
    {
        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (Length + buffer.Length <= stay)
            {
                await base.WriteAsync(buffer, cancellationToken);
                return;
            }

            switch (how)
            {
                case Leaving.WriteFails:
                    throw new IOException("The caller left.");
                case Leaving.CancelledInWrite:
                    await aborted.CancelAsync();
                    cancellationToken.ThrowIfCancellationRequested();
                    break;
                default:
                    await base.WriteAsync(buffer, cancellationToken);
                    await aborted.CancelAsync();
                    break;
            }
        }
    }
}
