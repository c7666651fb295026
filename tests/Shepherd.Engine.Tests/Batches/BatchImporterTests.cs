using Shepherd.Engine.Batches;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Model;
using Shepherd.Engine.Pricing;
using Shepherd.Engine.Storage;
using Shepherd.Testing;

namespace Shepherd.Engine.Tests.Batches;

public sealed class BatchImporterTests : StoreTestBase
{
    private Task<ImportResult> ImportAsync(MemoryStream input, ImportOptions? options = null, string? endpoint = null) =>
        new BatchImporter(Store, options ?? new ImportOptions { ChunkSize = 3 })
            .ImportAsync(input, new NewBatch(BatchIds.NewBatchId(), "test.jsonl", endpoint), Ct);

    private static string Chat(string id, string url = "/v1/chat/completions") =>
        $$$"""{"custom_id":"{{{id}}}","method":"POST","url":"{{{url}}}","body":{"model":"m","messages":[]}}""";

    [Fact]
    public async Task ValidInput_BecomesAnInProgressBatch_WithEveryLine()
    {
        var requests = BatchFiles.OpenAIChat(10);
        using var input = BatchFiles.Stream([.. requests.Select(r => r.Line)]);

        var result = await ImportAsync(input);

        Assert.True(result.Accepted);
        Assert.Equal(10, result.Total);
        Assert.Empty(result.Errors);
        Assert.Equal(input.Length, result.Bytes);
        Assert.Equal(Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(input.ToArray())), result.Sha256);
        var batch = await Store.GetBatchAsync(result.BatchId, Ct);
        Assert.Equal((BatchStatus.InProgress, InputFormat.OpenAI, BatchEndpoints.ChatCompletions, 10L), (batch!.Status, batch.Format, batch.Endpoint, batch.Total));
        var claimed = await Store.ClaimAsync("gpt-4.1-mini", result.BatchId, 100, Time.GetUtcNow(), Time.GetUtcNow().AddHours(1), Ct);
        Assert.Equal(requests.Select(r => r.CustomId), claimed.Select(c => c.CustomId));
        Assert.Equal(requests.Select(r => r.Body), claimed.Select(c => System.Text.Encoding.UTF8.GetString(c.Body)));
    }

    [Fact]
    public async Task AnthropicInput_IsAMessagesBatch()
    {
        using var input = BatchFiles.Stream([.. BatchFiles.Anthropic(3).Select(r => r.Line)]);

        var result = await ImportAsync(input);

        var batch = await Store.GetBatchAsync(result.BatchId, Ct);
        Assert.Equal((InputFormat.Anthropic, BatchEndpoints.Messages), (batch!.Format, batch.Endpoint));
    }

    [Fact]
    public async Task BlankLinesAndCrlf_AreAccepted_AndKeepLineNumbers()
    {
        using var input = BatchFiles.Stream(Chat("a") + "\r", "", "   ", Chat("b") + "\r", "");

        var result = await ImportAsync(input);

        Assert.True(result.Accepted);
        var lines = await Store.ReadResultsAsync(result.BatchId, 0, Ct).Select(r => r.Line).ToListAsync(Ct);
        Assert.Equal([1L, 4], lines);
    }

    [Fact]
    public async Task EveryProblem_IsReportedWithItsLineNumber_AndNothingIsImported()
    {
        using var input = BatchFiles.Stream(
            Chat("a"),
            "{broken",
            Chat("b"),
            Chat("a"),
            Chat("c", "/v1/embeddings"),
            """{"custom_id":"d","params":{"model":"m","max_tokens":5}}""",
            Chat("e", "/v1/nope"),
            Chat("b"));

        var result = await ImportAsync(input);

        Assert.False(result.Accepted);
        Assert.Equal(
            [(2L, "invalid_json_line"), (4L, "duplicate_custom_id"), (5L, "url_mismatch"), (6L, "format_mismatch"), (7L, "invalid_url"), (8L, "duplicate_custom_id")],
            result.Errors.Select(e => (e.Line!.Value, e.Code)));
        Assert.Contains("already used on line 1", result.Errors[1].Message, StringComparison.Ordinal);
        Assert.Contains("line 1", result.Errors[2].Message, StringComparison.Ordinal);
        var batch = await Store.GetBatchAsync(result.BatchId, Ct);
        Assert.Equal(BatchStatus.Failed, batch?.Status);
        Assert.Equal(result.Errors, batch?.Errors);
        Assert.Empty(await Store.ReadResultsAsync(result.BatchId, 0, Ct).ToListAsync(Ct));
        Assert.Empty(await Store.ListActiveBatchesAsync(Ct));
    }

    [Fact]
    public async Task EmptyInput_IsRejected()
    {
        using var input = BatchFiles.Stream("", "  ");

        var result = await ImportAsync(input);

        var error = Assert.Single(result.Errors);
        Assert.Equal(("empty_file", (long?)null), (error.Code, error.Line));
    }

    [Fact]
    public async Task MoreThanTheLimit_IsRejectedAtTheFirstLineTooMany()
    {
        using var input = BatchFiles.Stream([.. Enumerable.Range(1, 6).Select(i => Chat($"r{i}"))]);

        var result = await ImportAsync(input, new ImportOptions { MaxItems = 4 });

        var error = Assert.Single(result.Errors);
        Assert.Equal(("too_many_tasks", (long?)5), (error.Code, error.Line));
    }

    [Fact]
    public async Task ReadingStops_AtTheErrorLimit()
    {
        using var input = BatchFiles.Stream([.. Enumerable.Range(1, 50).Select(_ => "nope")]);

        var result = await ImportAsync(input, new ImportOptions { MaxErrors = 5 });

        Assert.Equal(5, result.Errors.Count);
        Assert.True(result.ErrorsTruncated);
    }

    [Fact]
    public async Task LineOverTheLimit_IsReported()
    {
        using var input = BatchFiles.Stream(Chat("a"), Chat(new string('x', 300)));

        var result = await ImportAsync(input, new ImportOptions { MaxLineBytes = 200 });

        Assert.Equal(("line_too_long", (long?)2), (result.Errors.Single().Code, result.Errors.Single().Line));
    }

    [Fact]
    public async Task FixedEndpoint_RejectsLinesForAnotherUrl()
    {
        using var input = BatchFiles.Stream(Chat("a"));

        var result = await ImportAsync(input, endpoint: BatchEndpoints.Embeddings);

        Assert.Equal("url_mismatch", result.Errors.Single().Code);
        Assert.Contains("the batch's endpoint", result.Errors.Single().Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AModelNoUpstreamServes_IsAnInputError()
    {
        using var input = BatchFiles.Stream(Chat("a"), Chat("b").Replace("\"model\":\"m\"", "\"model\":\"other\"", StringComparison.Ordinal));

        var result = await ImportAsync(input, new ImportOptions { ServesModel = model => model == "m" });

        Assert.Equal(("model_not_served", (long?)2), (result.Errors.Single().Code, result.Errors.Single().Line));
        Assert.Contains("\"other\"", result.Errors.Single().Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AnInterruptedReadIntoAnExistingBatch_LeavesItValidating_AndItCanBeReadAgain()
    {
        await Store.CreateBatchAsync(new NewBatch("batch_again", null, BatchEndpoints.ChatCompletions) { Door = BatchDoor.OpenAI }, Ct);
        var importer = new BatchImporter(Store, new ImportOptions { ChunkSize = 1 });
        var lines = BatchFiles.Stream(Chat("a"), Chat("b")).ToArray();

        await Assert.ThrowsAsync<IOException>(() => importer.ReadIntoAsync(new FailingStream(lines), "batch_again", BatchEndpoints.ChatCompletions, Ct));
        var interrupted = await Store.GetBatchAsync("batch_again", Ct);
        await Store.ClearItemsAsync("batch_again", Ct);
        var again = await importer.ReadIntoAsync(new MemoryStream(lines), "batch_again", BatchEndpoints.ChatCompletions, Ct);

        Assert.Equal(BatchStatus.Validating, interrupted!.Status);
        Assert.Equal((true, 2L), (again.Accepted, again.Total));
        Assert.Equal(BatchStatus.InProgress, (await Store.GetBatchAsync("batch_again", Ct))!.Status);
    }

    [Fact]
    public async Task AFailingInputStream_LeavesNoBatchBehind()
    {
        using var input = new FailingStream(BatchFiles.Stream(Chat("a"), Chat("b")).ToArray());

        var error = await Assert.ThrowsAsync<IOException>(() =>
            new BatchImporter(Store, new ImportOptions()).ImportAsync(input, new NewBatch("batch_io", "x.jsonl"), Ct));

        Assert.Equal("disk gone", error.Message);
        Assert.Null(await Store.GetBatchAsync("batch_io", Ct));
    }

    /// <summary>Returns its data, then fails as a broken disk would.</summary>
    private sealed class FailingStream(byte[] data) : MemoryStream(data)
    {
        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            Position < Length ? base.ReadAsync(buffer, cancellationToken) : throw new IOException("disk gone");
    }

    [Fact]
    public async Task APromptBeyondItsModelsContextWindow_IsRefusedWithItsLine_WhileUnknownModelsPass()
    {
        var huge = string.Concat(Enumerable.Repeat("word ", 150_000));
        var lines = new[] { BatchFiles.OpenAIChat(1, "gpt-4o-mini")[0].Line }
            .Concat(BatchFiles.OpenAIChat(1, i => huge, "gpt-4o-mini", 10, "big-").Select(r => r.Line))
            .Concat(BatchFiles.OpenAIChat(1, i => huge, "my-own-model", 10, "own-").Select(r => r.Line));
        using var input = BatchFiles.Stream([.. lines]);
        var options = new ImportOptions().WithContextWindows(PriceTable.BuiltIn, new TokenEstimator());

        var result = await ImportAsync(input, options);

        var error = Assert.Single(result.Errors);
        Assert.Equal((InputErrorCodes.ContextLengthExceeded, (long?)2), (error.Code, error.Line));
        Assert.Contains("more than the 128,000 of gpt-4o-mini's context window", error.Message, StringComparison.Ordinal);
    }
}
