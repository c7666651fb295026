using System.Text;
using CsCheck;
using Shepherd.Engine.Batches;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Model;
using Shepherd.Testing;

namespace Shepherd.Engine.Tests.Properties;

/// <summary>
/// Any bytes given to the importer end in the documented result: accepted, or rejected with
/// errors that name a real line; and a well-formed batch round-trips exactly.
/// </summary>
public sealed class JsonlImportProperties : IAsyncLifetime
{
    private const int MaxLineBytes = 2048;
    private TempStore _temp = null!;
    private int _batches;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync() => _temp = await TempStore.CreateAsync();

    public async ValueTask DisposeAsync() => await _temp.DisposeAsync();

    /// <summary>Pieces an adversarial input is built from; each is chosen by the generator.</summary>
    private static readonly byte[][] Pieces =
    [
        "\n"u8.ToArray(), "\r\n"u8.ToArray(), "\r"u8.ToArray(), [0xEF, 0xBB, 0xBF], [0], [0xC3], [0xFF, 0xFE], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80],
        "{"u8.ToArray(), "}"u8.ToArray(), "["u8.ToArray(), "]"u8.ToArray(), "\""u8.ToArray(), ","u8.ToArray(), ":"u8.ToArray(), " "u8.ToArray(), "\t"u8.ToArray(),
        "\"custom_id\":\"a\""u8.ToArray(), "\"custom_id\":\"b\""u8.ToArray(), "\"custom_id\":7"u8.ToArray(), "\"method\":\"POST\""u8.ToArray(),
        "\"url\":\"/v1/chat/completions\""u8.ToArray(), "\"url\":\"/v1/embeddings\""u8.ToArray(), "\"body\":{\"model\":\"m\"}"u8.ToArray(),
        "\"params\":{\"model\":\"m\",\"max_tokens\":5}"u8.ToArray(), "\"max_tokens\":99999999999999999999999"u8.ToArray(), "1e99999"u8.ToArray(),
        "-0.0000000000000000000001"u8.ToArray(), "\"stream\":true"u8.ToArray(), "\"\\u0000\\ud800\""u8.ToArray(), "null"u8.ToArray(), "/*c*/"u8.ToArray(),
        """{"custom_id":"r1","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[]}}"""u8.ToArray(),
        """{"custom_id":"r1","params":{"model":"m","max_tokens":1,"messages":[]}}"""u8.ToArray(),
    ];

    private static readonly Gen<byte[]> Adversarial =
        Gen.Frequency(
            (6, Gen.Int[0, Pieces.Length - 1].Select(i => Pieces[i])),
            (3, Gen.Byte.Array[1, 24]),
            (1, Gen.Int[1, 400].Select(depth => Encoding.ASCII.GetBytes(new string('[', depth) + new string(']', depth % 3 == 0 ? depth : 0)))),
            (1, Gen.Int[MaxLineBytes - 4, MaxLineBytes * 3].Select(n => Enumerable.Repeat((byte)'x', n).ToArray())),
            (1, Gen.Int[1, 300].Select(depth => Encoding.ASCII.GetBytes("""{"custom_id":"d","method":"POST","url":"/v1/chat/completions","body":{"model":"m","x":""" + new string('[', depth) + "1" + new string(']', depth) + "}}"))))
        .List[0, 40]
        .Select(parts => parts.SelectMany(p => p).ToArray());

    [Fact]
    public async Task AnyBytes_AreAcceptedOrRejectedWithLineErrors_AndRejectionLeavesNothing()
    {
        await Adversarial.Select(Gen.Int[1, 7]).SampleAsync(async (input, readSize) =>
        {
            var importer = new BatchImporter(_temp.Store, new ImportOptions { MaxLineBytes = MaxLineBytes, MaxErrors = 8, ChunkSize = 3 });
            var id = $"batch_p{Interlocked.Increment(ref _batches)}";

            var result = await importer.ImportAsync(new TrickleStream(input, readSize), new NewBatch(id, null), Ct);

            var lines = LineCount(input);
            var batch = await _temp.Store.GetBatchAsync(id, Ct);
            var items = await _temp.Store.ReadResultsAsync(id, 0, Ct).ToListAsync(Ct);
            Assert.Equal(input.Length, result.Bytes);
            if (result.Accepted)
            {
                Assert.Empty(result.Errors);
                Assert.Equal(BatchStatus.InProgress, batch?.Status);
                Assert.Equal(result.Total, items.Count);
                Assert.All(items, item => Assert.InRange(item.Line, 1, lines));
                return;
            }

            Assert.NotEmpty(result.Errors);
            foreach (var error in result.Errors)
            {
                Assert.False(string.IsNullOrWhiteSpace(error.Message), error.ToString());
                Assert.False(string.IsNullOrWhiteSpace(error.Code), error.ToString());
                if (error.Line is { } line)
                {
                    Assert.InRange(line, 1, lines);
                }
                else
                {
                    Assert.Equal(InputErrorCodes.EmptyFile, error.Code);
                }
            }

            Assert.Equal(BatchStatus.Failed, batch?.Status);
            Assert.Empty(items);
            Assert.Empty(await _temp.Store.ReadRequestsAsync(id, Enum.GetValues<ItemState>(), Ct).ToListAsync(Ct));
        }, iter: 400, threads: 1, print: t => $"read {t.Item2}: {Convert.ToHexString(t.Item1.AsSpan(0, Math.Min(t.Item1.Length, 512)))}");
    }

    [Fact]
    public async Task WellFormedBatch_IsAccepted_AndEveryIdAndBodyRoundTrips()
    {
        var gen =
            from anthropic in Gen.Bool
            from n in Gen.Int[1, 25]
            from bom in Gen.Bool
            from trailing in Gen.Bool
            from readSize in Gen.Int[1, 64]
            from lines in Gen.Select(Gen.Int[0, 3], Gen.Int[0, 3], Gen.Bool, Gen.Int[0, 5], Gen.String[Gen.Char.AlphaNumeric, 0, 12], Gen.Int[0, 100_000]).Array[n]
            select (anthropic, bom, trailing, readSize, lines);

        await gen.SampleAsync(async sample =>
        {
            var (anthropic, bom, trailing, readSize, lines) = sample;
            var text = new StringBuilder();
            var expected = new List<(string Id, string Body)>();
            for (var i = 0; i < lines.Length; i++)
            {
                var (spaces, tabs, crlf, blanks, tail, max) = lines[i];
                var ws = new string(' ', spaces) + new string('\t', tabs);
                var (idJson, id) = anthropic || i % 3 != 0
                    ? ($"\"r{i}_{tail}\"", $"r{i}_{tail}")
                    : ($"\"q{i} \\\"é漢🙂\\u0041{tail}\"", $"q{i} \"é漢🙂A{tail}");
                var body = $$"""{{{ws}}"model"{{ws}}:{{ws}}"m-{{tail}}",{{ws}}"max_tokens":{{max}},"messages":[{"role":"user","content":"hi {{tail}} \u00e9"}]{{ws}}}""";
                var line = anthropic
                    ? $$"""{{ws}}{"custom_id":{{ws}}{{idJson}},{{ws}}"params":{{ws}}{{body}}{{ws}}}{{ws}}"""
                    : $$"""{{ws}}{"custom_id":{{idJson}},"method":"POST",{{ws}}"url":"/v1/chat/completions","body":{{body}},"extra":{"a":[1,2,{"b":null}]} }{{ws}}""";
                text.Append(line);
                expected.Add((id, body));
                for (var b = 0; b < blanks % 3; b++)
                {
                    text.Append(crlf ? "\r\n" : "\n").Append(ws);
                }

                if (i < lines.Length - 1 || trailing)
                {
                    text.Append(crlf ? "\r\n" : "\n");
                }
            }

            var bytes = Encoding.UTF8.GetBytes(text.ToString());
            var input = bom ? [0xEF, 0xBB, 0xBF, .. bytes] : bytes;
            var importer = new BatchImporter(_temp.Store, new ImportOptions { ChunkSize = 4 });
            var batchId = $"batch_v{Interlocked.Increment(ref _batches)}";

            var result = await importer.ImportAsync(new TrickleStream(input, readSize), new NewBatch(batchId, null), Ct);

            Assert.True(result.Accepted, string.Join("\n", result.Errors));
            Assert.Equal(lines.Length, result.Total);
            var batch = await _temp.Store.GetBatchAsync(batchId, Ct);
            Assert.Equal(anthropic ? InputFormat.Anthropic : InputFormat.OpenAI, batch?.Format);
            var stored = await _temp.Store.ReadRequestsAsync(batchId, [ItemState.Queued], Ct).ToListAsync(Ct);
            Assert.Equal(expected.Select(e => e.Id), stored.Select(s => s.CustomId));
            Assert.Equal(expected.Select(e => e.Body), stored.Select(s => Encoding.UTF8.GetString(s.Body)));
        }, iter: 150, threads: 1);
    }

    /// <summary>Found by the fuzz scenario: the JSON reader passes an escaped lone surrogate and only throws when the string is read.</summary>
    [Theory]
    [InlineData("""{"custom_id":"\ud800","method":"POST","url":"/v1/chat/completions","body":{"model":"m"}}""")]
    [InlineData("""{"custom_id":"a","method":"\ud800","url":"/v1/chat/completions","body":{"model":"m"}}""")]
    [InlineData("""{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"\udc00x"}}""")]
    public async Task EscapedLoneSurrogate_IsAnInvalidLine_NotAnException(string line)
    {
        var importer = new BatchImporter(_temp.Store, new ImportOptions());

        var result = await importer.ImportAsync(new MemoryStream(Encoding.UTF8.GetBytes(line)), new NewBatch("batch_surrogate", null), Ct);

        Assert.False(result.Accepted);
        var error = Assert.Single(result.Errors);
        Assert.Equal((1L, "invalid_json_line"), (error.Line, error.Code));
        Assert.Contains("not valid Unicode", error.Message, StringComparison.Ordinal);
    }

    /// <summary>Lines as the reader counts them: each line end, plus a last line without one.</summary>
    private static long LineCount(byte[] input)
    {
        var span = input.AsSpan();
        var count = (long)span.Count((byte)'\n');
        var last = span.LastIndexOf((byte)'\n');
        return span.Length > last + 1 ? count + 1 : count;
    }
}
