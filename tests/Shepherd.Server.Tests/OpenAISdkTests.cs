using System.ClientModel.Primitives;
using System.ClientModel;
using System.Net.Http.Headers;
using System.Text.Json;
using System.Text;
using OpenAI.Batch;
using OpenAI.Files;
using OpenAI;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Server.Tests;

/// <summary>
/// The server driven by the official OpenAI .NET SDK, called the way its users call it: files
/// through the typed file client, batches through the protocol methods of the batch client.
/// </summary>
public sealed class OpenAISdkTests
{
    private const string ChatCompletions = "/v1/chat/completions";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static RequestOptions Options => new() { CancellationToken = Ct };

    [Fact]
    public async Task AFileBatch_RunsThroughTheSdk_AndItsOutputAndErrorFilesDownload()
    {
        // "hi" counts 5 prompt tokens in the simulator (one message); the long prompt counts dozens.
        await using var server = await RunningServer.StartAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(2), ContextTokens = 8 });
        var client = Client(server);
        var files = client.GetOpenAIFileClient();
        var batches = client.GetBatchClient();
        var input = Jsonl(Line("short-1", "hi"), Line("too-long", new string('x', 200)), Line("short-2", "yo"));
        var before = TimeProvider.System.GetUtcNow().AddSeconds(-2);

        OpenAIFile uploaded = await files.UploadFileAsync(BinaryData.FromString(input), "requests.jsonl", FileUploadPurpose.Batch);

        Assert.StartsWith("file-", uploaded.Id, StringComparison.Ordinal);
        Assert.Equal("requests.jsonl", uploaded.Filename);
        Assert.Equal(FilePurpose.Batch, uploaded.Purpose);
        Assert.Equal(Encoding.UTF8.GetByteCount(input), uploaded.SizeInBytesLong);
        Assert.InRange(uploaded.CreatedAt, before, TimeProvider.System.GetUtcNow().AddSeconds(2));
        Assert.Null(uploaded.ExpiresAt);

        OpenAIFile retrieved = await files.GetFileAsync(uploaded.Id, Ct);
        Assert.Equal((uploaded.Id, uploaded.Filename, uploaded.SizeInBytesLong, uploaded.CreatedAt), (retrieved.Id, retrieved.Filename, retrieved.SizeInBytesLong, retrieved.CreatedAt));
        Assert.Equal(FilePurpose.Batch, retrieved.Purpose);

        OpenAIFileCollection listed = await files.GetFilesAsync(FilePurpose.Batch, Ct);
        Assert.Equal(uploaded.Id, Assert.Single(listed).Id);

        var operation = await CreateBatchAsync(batches, uploaded.Id, new Dictionary<string, string> { ["job"] = "sdk-compat", ["owner"] = "tests" });

        Assert.StartsWith("batch_", operation.BatchId, StringComparison.Ordinal);
        var created = Json(operation.GetRawResponse());
        Assert.Equal(operation.BatchId, created.GetProperty("id").GetString());
        Assert.Equal("batch", created.GetProperty("object").GetString());
        Assert.Equal(ChatCompletions, created.GetProperty("endpoint").GetString());
        Assert.Equal(uploaded.Id, created.GetProperty("input_file_id").GetString());
        Assert.Equal("24h", created.GetProperty("completion_window").GetString());
        Assert.Equal("sdk-compat", created.GetProperty("metadata").GetProperty("job").GetString());
        Assert.Equal(JsonValueKind.Number, created.GetProperty("created_at").ValueKind);

        await WaitAsync(operation);

        Assert.True(operation.HasCompleted);
        var ended = Json(operation.GetRawResponse());
        Assert.Equal("completed", ended.GetProperty("status").GetString());
        var counts = ended.GetProperty("request_counts");
        Assert.Equal((3, 2, 1), (counts.GetProperty("total").GetInt32(), counts.GetProperty("completed").GetInt32(), counts.GetProperty("failed").GetInt32()));

        // The typed model reads the same batch.
        var job = (BatchJob)await batches.GetBatchAsync(operation.BatchId, Options);
        Assert.Equal(operation.BatchId, job.Id);
        Assert.Equal(ChatCompletions, job.Endpoint);
        Assert.Equal(uploaded.Id, job.InputFileId);
        Assert.Equal("tests", job.Metadata["owner"]);
        Assert.NotNull(job.CompletedAt);
        Assert.NotNull(job.InProgressAt);
        Assert.Null(job.FailedAt);
        Assert.Equal(ended.GetProperty("output_file_id").GetString(), job.OutputFileId);
        Assert.Equal(ended.GetProperty("error_file_id").GetString(), job.ErrorFileId);

        OpenAIFile outputFile = await files.GetFileAsync(job.OutputFileId, Ct);
        Assert.Equal(FilePurpose.BatchOutput, outputFile.Purpose);

        var output = Lines(await files.DownloadFileAsync(job.OutputFileId, Ct));
        Assert.Equal(["short-1", "short-2"], output.Select(l => l.GetProperty("custom_id").GetString()).Order(StringComparer.Ordinal));
        Assert.All(output, line =>
        {
            Assert.StartsWith("batch_req_", line.GetProperty("id").GetString(), StringComparison.Ordinal);
            var response = line.GetProperty("response");
            Assert.Equal(200, response.GetProperty("status_code").GetInt32());
            Assert.Equal("gpt-4o-mini", response.GetProperty("body").GetProperty("model").GetString());
            Assert.True(response.GetProperty("body").GetProperty("choices").GetArrayLength() > 0);
            Assert.Equal(JsonValueKind.Null, line.GetProperty("error").ValueKind);
        });

        var errorLine = Assert.Single(Lines(await files.DownloadFileAsync(job.ErrorFileId, Ct)));
        Assert.Equal("too-long", errorLine.GetProperty("custom_id").GetString());
        Assert.Equal(400, errorLine.GetProperty("response").GetProperty("status_code").GetInt32());
        Assert.Equal("context_length_exceeded", errorLine.GetProperty("response").GetProperty("body").GetProperty("error").GetProperty("code").GetString());

        // Results are batch_output files, not batch input.
        Assert.Equal(uploaded.Id, Assert.Single((OpenAIFileCollection)await files.GetFilesAsync(FilePurpose.Batch, Ct)).Id);
        Assert.Equal(
            new[] { job.OutputFileId, job.ErrorFileId }.Order(StringComparer.Ordinal),
            ((OpenAIFileCollection)await files.GetFilesAsync(FilePurpose.BatchOutput, Ct)).Select(f => f.Id).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task Batches_PageThroughTheSdk_AndAreInvisibleToAnotherTenant()
    {
        await using var server = await RunningServer.StartAsync();
        var client = Client(server);
        var files = client.GetOpenAIFileClient();
        var batches = client.GetBatchClient();
        OpenAIFile file = await files.UploadFileAsync(BinaryData.FromString(Jsonl(Line("a", "hello"))), "one.jsonl", FileUploadPurpose.Batch);
        var ids = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            ids.Add((await CreateBatchAsync(batches, file.Id)).BatchId);
        }

        var newestFirst = Enumerable.Reverse(ids).ToList();

        // The typed collection pages on its own, two at a time.
        var all = new List<string>();
        await foreach (var job in batches.GetBatchesAsync(new BatchCollectionOptions { PageSizeLimit = 2 }, Ct))
        {
            all.Add(job.Id);
        }

        Assert.Equal(newestFirst, all);

        var pages = new List<JsonElement>();
        await foreach (var page in batches.GetBatchesAsync(after: null, limit: 2, Options).GetRawPagesAsync())
        {
            pages.Add(Json(page.GetRawResponse()));
        }

        Assert.Equal(2, pages.Count);
        Assert.Equal(newestFirst[..2], pages[0].GetProperty("data").EnumerateArray().Select(b => b.GetProperty("id").GetString()));
        Assert.Equal((newestFirst[0], newestFirst[1], true), (pages[0].GetProperty("first_id").GetString(), pages[0].GetProperty("last_id").GetString(), pages[0].GetProperty("has_more").GetBoolean()));
        Assert.Equal([newestFirst[2]], pages[1].GetProperty("data").EnumerateArray().Select(b => b.GetProperty("id").GetString()));
        Assert.False(pages[1].GetProperty("has_more").GetBoolean());

        var afterNewest = new List<string>();
        await foreach (var job in batches.GetBatchesAsync(new BatchCollectionOptions { PageSizeLimit = 2, AfterId = newestFirst[0] }, Ct))
        {
            afterNewest.Add(job.Id);
        }

        Assert.Equal(newestFirst[1..], afterNewest);

        // A batch handle is rebuilt from its id alone.
        var rebuilt = await CreateBatchOperation.RehydrateAsync(batches, ids[0], Ct);
        Assert.Equal(ids[0], rebuilt.BatchId);

        var other = Client(server, RunningServer.OtherKey);
        var otherFiles = other.GetOpenAIFileClient();
        var otherBatches = other.GetBatchClient();
        var seen = new List<string>();
        await foreach (var job in otherBatches.GetBatchesAsync(new BatchCollectionOptions(), Ct))
        {
            seen.Add(job.Id);
        }

        Assert.Empty(seen);
        Assert.Empty((OpenAIFileCollection)await otherFiles.GetFilesAsync(Ct));
        Assert.Equal(404, (await Assert.ThrowsAsync<ClientResultException>(() => otherBatches.GetBatchAsync(ids[0], Options))).Status);
        Assert.Equal(404, (await Assert.ThrowsAsync<ClientResultException>(() => CreateBatchOperation.RehydrateAsync(otherBatches, ids[0], Ct))).Status);
        Assert.Equal(404, (await Assert.ThrowsAsync<ClientResultException>(() => otherFiles.GetFileAsync(file.Id, Ct))).Status);
        Assert.Equal(404, (await Assert.ThrowsAsync<ClientResultException>(() => otherFiles.DownloadFileAsync(file.Id, Ct))).Status);
        Assert.Equal(404, (await Assert.ThrowsAsync<ClientResultException>(() => otherFiles.DeleteFileAsync(file.Id, Ct))).Status);
        var foreign = await Assert.ThrowsAsync<ClientResultException>(() => CreateBatchAsync(otherBatches, file.Id));
        Assert.Equal(404, foreign.Status);

        // The owner still has everything.
        OpenAIFile stillThere = await files.GetFileAsync(file.Id, Ct);
        Assert.Equal(file.Id, stillThere.Id);
    }

    [Fact]
    public async Task Cancel_WhileRunning_KeepsFinishedResults()
    {
        // Two requests a second: twenty take ten seconds, so the batch is cancelled part-way.
        await using var server = await RunningServer.StartAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(2), RequestsPerMinute = 120 });
        var client = Client(server);
        var files = client.GetOpenAIFileClient();
        var batches = client.GetBatchClient();
        const int total = 20;
        OpenAIFile file = await files.UploadFileAsync(
            BinaryData.FromString(Jsonl([.. Enumerable.Range(0, total).Select(i => Line($"r{i}", "hi"))])), "slow.jsonl", FileUploadPurpose.Batch);
        var operation = await CreateBatchAsync(batches, file.Id);

        await PollAsync(batches, operation.BatchId, b => b.GetProperty("request_counts").GetProperty("completed").GetInt32() >= 1);
        var cancelling = Json((await operation.CancelAsync(Options)).GetRawResponse());

        // The status of this answer is checked by Cancel_AnswersCancellingUntilCancelled_AndCanBeRepeated.
        Assert.Equal(operation.BatchId, cancelling.GetProperty("id").GetString());
        Assert.Equal(JsonValueKind.Number, cancelling.GetProperty("cancelling_at").ValueKind);

        await WaitAsync(operation);

        var ended = Json(operation.GetRawResponse());
        Assert.Equal("cancelled", ended.GetProperty("status").GetString());
        Assert.Equal(JsonValueKind.Number, ended.GetProperty("cancelled_at").ValueKind);
        var counts = ended.GetProperty("request_counts");
        var (all, completed, failed) = (counts.GetProperty("total").GetInt32(), counts.GetProperty("completed").GetInt32(), counts.GetProperty("failed").GetInt32());
        Assert.Equal(total, all);
        Assert.Equal(all, completed + failed);
        Assert.InRange(completed, 1, total - 1);

        var job = (BatchJob)await batches.GetBatchAsync(operation.BatchId, Options);
        Assert.NotNull(job.CancellingAt);
        Assert.NotNull(job.CancelledAt);

        // What finished before the cancel keeps its result.
        var output = Lines(await files.DownloadFileAsync(job.OutputFileId, Ct));
        Assert.Equal(completed, output.Count);
        Assert.All(output, line => Assert.Equal(200, line.GetProperty("response").GetProperty("status_code").GetInt32()));

        // What was never sent is in the error file, marked cancelled.
        var errors = Lines(await files.DownloadFileAsync(job.ErrorFileId, Ct));
        Assert.Equal(failed, errors.Count);
        Assert.All(errors, line =>
        {
            Assert.Equal(JsonValueKind.Null, line.GetProperty("response").ValueKind);
            Assert.Equal("batch_cancelled", line.GetProperty("error").GetProperty("code").GetString());
        });
        Assert.Equal(
            Enumerable.Range(0, total).Select(i => $"r{i}").Order(StringComparer.Ordinal),
            output.Concat(errors).Select(l => l.GetProperty("custom_id").GetString()).Order(StringComparer.Ordinal));

        // Cancelling again answers the cancelled batch.
        var again = Json((await batches.GetBatchAsync(operation.BatchId, Options)).GetRawResponse());
        Assert.Equal("cancelled", again.GetProperty("status").GetString());
        Assert.Equal("cancelled", Json((await operation.CancelAsync(Options)).GetRawResponse()).GetProperty("status").GetString());
    }

    [Fact]
    public async Task Cancel_AnswersCancellingUntilCancelled_AndCanBeRepeated()
    {
        // Many requests, so the result files of the cancelled batch take a moment to write.
        await using var server = await RunningServer.StartAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(2), RequestsPerMinute = 120 });
        var client = Client(server);
        var batches = client.GetBatchClient();
        OpenAIFile file = await client.GetOpenAIFileClient().UploadFileAsync(
            BinaryData.FromString(Jsonl([.. Enumerable.Range(0, 2000).Select(i => Line($"r{i}", "hi"))])), "slow.jsonl", FileUploadPurpose.Batch);
        var operation = await CreateBatchAsync(batches, file.Id);
        await PollAsync(batches, operation.BatchId, b => b.GetProperty("request_counts").GetProperty("completed").GetInt32() >= 1);

        // A client that cancels again until the batch says cancelled (as one retrying a lost answer
        // would) must see cancelling, then cancelled, every time; the OpenAI lifecycle has no
        // finalizing step on the way to cancelled. No delay between calls: every moment of the
        // cancel is looked at.
        var answers = new List<string>();
        var deadline = TimeProvider.System.GetUtcNow() + TimeSpan.FromSeconds(20);
        while (answers.Count == 0 || answers[^1] != "cancelled")
        {
            try
            {
                answers.Add(Json((await operation.CancelAsync(Options)).GetRawResponse()).GetProperty("status").GetString()!);
            }
            catch (ClientResultException e)
            {
                answers.Add($"HTTP {e.Status} {e.GetRawResponse()?.Content}");
            }

            Assert.True(TimeProvider.System.GetUtcNow() < deadline, $"Batch {operation.BatchId} was not cancelled in time: {string.Join(" | ", answers.Distinct())}");
        }

        var seen = answers.Distinct().ToList();
        Assert.True(seen.All(a => a is "cancelling" or "cancelled"), $"Cancel answered, in order: {string.Join(" | ", seen)}");
    }

    [Fact]
    public async Task DeleteFile_RemovesIt()
    {
        await using var server = await RunningServer.StartAsync();
        var files = Client(server).GetOpenAIFileClient();
        OpenAIFile kept = await files.UploadFileAsync(BinaryData.FromString(Jsonl(Line("k", "keep"))), "keep.jsonl", FileUploadPurpose.Batch);
        OpenAIFile doomed = await files.UploadFileAsync(BinaryData.FromString(Jsonl(Line("d", "drop"))), "drop.jsonl", FileUploadPurpose.Batch);

        FileDeletionResult deleted = await files.DeleteFileAsync(doomed.Id, Ct);

        Assert.True(deleted.Deleted);
        Assert.Equal(doomed.Id, deleted.FileId);
        Assert.Equal(404, (await Assert.ThrowsAsync<ClientResultException>(() => files.GetFileAsync(doomed.Id, Ct))).Status);
        Assert.Equal(404, (await Assert.ThrowsAsync<ClientResultException>(() => files.DownloadFileAsync(doomed.Id, Ct))).Status);
        Assert.Equal(404, (await Assert.ThrowsAsync<ClientResultException>(() => files.DeleteFileAsync(doomed.Id, Ct))).Status);
        Assert.Equal(kept.Id, Assert.Single((OpenAIFileCollection)await files.GetFilesAsync(Ct)).Id);
        Assert.Equal(Jsonl(Line("k", "keep")), (await files.DownloadFileAsync(kept.Id, Ct)).Value.ToString());
    }

    [Fact]
    public async Task AFileWithBadLines_EndsFailed_WithLineNumberedErrors()
    {
        await using var server = await RunningServer.StartAsync();
        var client = Client(server);
        var files = client.GetOpenAIFileClient();
        var batches = client.GetBatchClient();
        var input = Jsonl(
            Line("a", "fine"),
            "this is not json",
            Line("a", "the same id again"),
            Line("b", "wrong url").Replace(ChatCompletions, "/v1/embeddings", StringComparison.Ordinal));
        OpenAIFile file = await files.UploadFileAsync(BinaryData.FromString(input), "bad.jsonl", FileUploadPurpose.Batch);

        var operation = await CreateBatchAsync(batches, file.Id);
        await WaitAsync(operation);

        var ended = Json(operation.GetRawResponse());
        Assert.Equal("failed", ended.GetProperty("status").GetString());
        Assert.Equal(JsonValueKind.Number, ended.GetProperty("failed_at").ValueKind);
        Assert.Equal(JsonValueKind.Null, ended.GetProperty("output_file_id").ValueKind);
        var errors = ended.GetProperty("errors");
        Assert.Equal("list", errors.GetProperty("object").GetString());
        var data = errors.GetProperty("data").EnumerateArray().ToList();
        Assert.All(data, e =>
        {
            Assert.False(string.IsNullOrWhiteSpace(e.GetProperty("message").GetString()));
            Assert.True(e.TryGetProperty("param", out _));
        });
        Assert.Equal(
            [("invalid_json_line", 2), ("duplicate_custom_id", 3), ("url_mismatch", 4)],
            data.Select(e => (e.GetProperty("code").GetString(), e.GetProperty("line").GetInt32())));

        var job = (BatchJob)await batches.GetBatchAsync(operation.BatchId, Options);
        Assert.NotNull(job.FailedAt);
        Assert.Null(job.CompletedAt);
    }

    [Fact]
    public async Task AWrongOrMissingKey_Gets401_AndABadPurpose_Gets400()
    {
        await using var server = await RunningServer.StartAsync();
        var stranger = Client(server, "sk-not-a-key");
        var input = BinaryData.FromString(Jsonl(Line("a", "hello")));

        var listFiles = await Assert.ThrowsAsync<ClientResultException>(() => stranger.GetOpenAIFileClient().GetFilesAsync(Ct));
        Assert.Equal(401, listFiles.Status);
        Assert.Equal("invalid_api_key", Json(listFiles.GetRawResponse()!).GetProperty("error").GetProperty("code").GetString());
        Assert.Equal(401, (await Assert.ThrowsAsync<ClientResultException>(() => stranger.GetOpenAIFileClient().UploadFileAsync(input, "a.jsonl", FileUploadPurpose.Batch))).Status);
        Assert.Equal(401, (await Assert.ThrowsAsync<ClientResultException>(() => CreateBatchAsync(stranger.GetBatchClient(), "file-whatever"))).Status);
        Assert.Equal(401, (await Assert.ThrowsAsync<ClientResultException>(async () =>
        {
            await foreach (var job in stranger.GetBatchClient().GetBatchesAsync(new BatchCollectionOptions(), Ct))
            {
                Assert.Fail($"A stranger was shown {job.Id}.");
            }
        })).Status);

        using var anonymous = server.Client(null);
        var (status, body) = await RunningServer.SendAsync(anonymous, HttpMethod.Get, "/v1/files");
        Assert.Equal(401, status);
        Assert.Equal(["message", "type", "param", "code"], body.GetProperty("error").EnumerateObject().Select(p => p.Name));

        var files = Client(server).GetOpenAIFileClient();
        var fineTune = await Assert.ThrowsAsync<ClientResultException>(() => files.UploadFileAsync(input, "a.jsonl", FileUploadPurpose.FineTune));
        Assert.Equal(400, fineTune.Status);
        var error = Json(fineTune.GetRawResponse()!).GetProperty("error");
        Assert.Equal(("invalid_request_error", "purpose"), (error.GetProperty("type").GetString(), error.GetProperty("param").GetString()));
        Assert.Contains("fine-tune", error.GetProperty("message").GetString(), StringComparison.Ordinal);

        // The protocol method takes a multipart body built by hand.
        using var form = new MultipartFormDataContent();
        using var purpose = new StringContent("nonsense");
        using var file = new ByteArrayContent(input.ToArray());
        file.Headers.ContentType = new MediaTypeHeaderValue("application/jsonl");
        form.Add(purpose, "purpose");
        form.Add(file, "file", "a.jsonl");
        var raw = await Assert.ThrowsAsync<ClientResultException>(async () =>
            await files.UploadFileAsync(BinaryContent.Create(BinaryData.FromBytes(await form.ReadAsByteArrayAsync(Ct))), form.Headers.ContentType!.ToString(), Options));
        Assert.Equal(400, raw.Status);
        Assert.Equal("purpose", Json(raw.GetRawResponse()!).GetProperty("error").GetProperty("param").GetString());

        // Refused uploads leave nothing behind.
        Assert.Empty((OpenAIFileCollection)await files.GetFilesAsync(Ct));
    }

    internal static OpenAIClient Client(RunningServer server, string key = RunningServer.Key) =>
        new(new ApiKeyCredential(key), new OpenAIClientOptions { Endpoint = new Uri(server.BaseUrl, "v1"), RetryPolicy = new ClientRetryPolicy(0) });

    private static string Line(string customId, string prompt) => JsonSerializer.Serialize(new
    {
        custom_id = customId,
        method = "POST",
        url = ChatCompletions,
        body = new { model = "gpt-4o-mini", messages = new[] { new { role = "user", content = prompt } } },
    });

    private static string Jsonl(params string[] lines) => string.Concat(lines.Select(l => l + "\n"));

    private static async Task<CreateBatchOperation> CreateBatchAsync(BatchClient batches, string fileId, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var body = new Dictionary<string, object>
        {
            ["input_file_id"] = fileId,
            ["endpoint"] = ChatCompletions,
            ["completion_window"] = "24h",
        };
        if (metadata is not null)
        {
            body["metadata"] = metadata;
        }

        using var content = BinaryContent.Create(BinaryData.FromObjectAsJson(body));
        return await batches.CreateBatchAsync(content, waitUntilCompleted: false, Options);
    }

    /// <summary>The SDK's own wait, bounded so a batch that never ends fails the test instead of hanging it.</summary>
    private static async Task WaitAsync(CreateBatchOperation operation)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(30));
        await operation.WaitForCompletionAsync(timeout.Token);
    }

    private static Task<JsonElement> PollAsync(BatchClient batches, string batchId, Func<JsonElement, bool> done) =>
        Poll.UntilAsync(async () => Json((await batches.GetBatchAsync(batchId, Options)).GetRawResponse()), done, TimeSpan.FromSeconds(30), Ct);

    internal static JsonElement Json(PipelineResponse response)
    {
        using var document = JsonDocument.Parse(response.Content.ToMemory());
        return document.RootElement.Clone();
    }

    internal static List<JsonElement> Lines(BinaryData content) =>
        [.. content.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(line =>
        {
            using var document = JsonDocument.Parse(line);
            return document.RootElement.Clone();
        })];
}
