using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Time.Testing;
using Shepherd.Engine.Model;
using Shepherd.Engine.Storage;
using Shepherd.Engine.Upstreams;
using Shepherd.Simulator;

namespace Shepherd.Server.Tests;

public sealed class ServerBehaviourTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static string Prompts(int count, string prefix = "r") =>
        string.Join(",", Enumerable.Range(0, count).Select(i => $$"""{"custom_id":"{{prefix}}{{i}}","prompt":"p"}"""));

    private static async Task<(int Status, JsonElement Body)> UploadAsync(HttpClient http, string content, string purpose = "batch", string filename = "input.jsonl")
    {
        using var form = new MultipartFormDataContent
        {
            { new StringContent(purpose), "purpose" },
            { new ByteArrayContent(Encoding.UTF8.GetBytes(content)), "file", filename },
        };
        using var response = await http.PostAsync("/v1/files", form, Ct);
        return ((int)response.StatusCode, JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct)).RootElement.Clone());
    }

    private static string ChatLine(string customId, string url = "/v1/chat/completions") =>
        $$$"""{"custom_id":"{{{customId}}}","method":"POST","url":"{{{url}}}","body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}}""";

    [Fact]
    public async Task ListingFilesWithOrderAsc_ListsOldestFirst_AndPagesOn_NotA400()
    {
        await using var server = await RunningServer.StartAsync();
        var ids = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            ids.Add((await UploadAsync(server.Http, ChatLine($"r{i}") + "\n")).Body.GetProperty("id").GetString()!);
        }

        var (status, first) = await server.GetAsync("/v1/files?order=asc&limit=2");
        var (_, next) = await server.GetAsync($"/v1/files?order=asc&limit=2&after={first.GetProperty("last_id").GetString()}");
        var (_, newestFirst) = await server.GetAsync("/v1/files?order=desc");

        Assert.Equal(200, status);
        Assert.Equal(ids[..2], first.GetProperty("data").EnumerateArray().Select(f => f.GetProperty("id").GetString()));
        Assert.True(first.GetProperty("has_more").GetBoolean());
        Assert.Equal(ids[2..], next.GetProperty("data").EnumerateArray().Select(f => f.GetProperty("id").GetString()));
        Assert.False(next.GetProperty("has_more").GetBoolean());
        Assert.Equal(Enumerable.Reverse(ids), newestFirst.GetProperty("data").EnumerateArray().Select(f => f.GetProperty("id").GetString()));
    }

    [Theory]
    [InlineData("/v1/files?order=newest", "order")]
    [InlineData("/v1/files?limit=0", "limit")]
    [InlineData("/v1/batches?limit=0", "limit")]
    [InlineData("/v1/batches?limit=101", "limit")]
    [InlineData("/v1/batches?limit=ten", "limit")]
    public async Task AListParameterOutOfRange_Gets400_NamingIt(string path, string param)
    {
        await using var server = await RunningServer.StartAsync();

        var (status, body) = await server.GetAsync(path);

        Assert.Equal(400, status);
        Assert.Equal(param, body.GetProperty("error").GetProperty("param").GetString());
    }

    [Fact]
    public async Task ABadFile_EndsFailed_WithEveryErrorAndItsLine()
    {
        await using var server = await RunningServer.StartAsync();
        var content = string.Join("\n", ChatLine("a"), "not json", ChatLine("a"), ChatLine("b", "/v1/embeddings")) + "\n";
        var (_, file) = await UploadAsync(server.Http, content);

        var (status, created) = await server.PostAsync("/v1/batches",
            $$"""{"input_file_id":"{{file.GetProperty("id").GetString()}}","endpoint":"/v1/chat/completions","completion_window":"24h"}""");

        Assert.Equal(200, status);
        Assert.Equal("validating", created.GetProperty("status").GetString());
        var failed = await server.WaitForEndAsync(created.GetProperty("id").GetString()!);
        Assert.Equal("failed", failed.GetProperty("status").GetString());
        Assert.Equal(JsonValueKind.Number, failed.GetProperty("failed_at").ValueKind);
        var errors = failed.GetProperty("errors").GetProperty("data").EnumerateArray()
            .Select(e => (e.GetProperty("code").GetString(), e.GetProperty("line").GetInt64())).ToList();
        Assert.Equal([("invalid_json_line", 2L), ("duplicate_custom_id", 3L), ("url_mismatch", 4L)], errors);
    }

    [Fact]
    public async Task AFileWithMoreBadLinesThanAreListed_EndsFailed_SayingHowManyWereNotListed()
    {
        await using var server = await RunningServer.StartAsync();
        var (_, file) = await UploadAsync(server.Http, string.Concat(Enumerable.Repeat("not json\n", 130)));

        var (_, created) = await server.PostAsync("/v1/batches",
            $$"""{"input_file_id":"{{file.GetProperty("id").GetString()}}","endpoint":"/v1/chat/completions","completion_window":"24h"}""");
        var failed = await server.WaitForEndAsync(created.GetProperty("id").GetString()!);

        var errors = failed.GetProperty("errors").GetProperty("data").EnumerateArray().ToList();
        Assert.Equal(101, errors.Count);
        Assert.All(errors.Take(100), e => Assert.Equal("invalid_json_line", e.GetProperty("code").GetString()));
        Assert.Equal(("more_errors", "and 30 more problems on later lines, not listed"), (errors[100].GetProperty("code").GetString(), errors[100].GetProperty("message").GetString()));
    }

    [Fact]
    public async Task FileBatches_Refuse_WrongEndpointsWindowsAndFiles()
    {
        await using var server = await RunningServer.StartAsync();
        var (_, file) = await UploadAsync(server.Http, ChatLine("a") + "\n");
        var id = file.GetProperty("id").GetString();

        var cases = new (string Body, int Status, string Param)[]
        {
            ($$"""{"input_file_id":"{{id}}","endpoint":"/v1/images","completion_window":"24h"}""", 400, "endpoint"),
            ($$"""{"input_file_id":"{{id}}","endpoint":"/v1/chat/completions","completion_window":"tomorrow"}""", 400, "completion_window"),
            ("""{"input_file_id":"file-nope","endpoint":"/v1/chat/completions","completion_window":"24h"}""", 404, "file_id"),
            ("""{"endpoint":"/v1/chat/completions","completion_window":"24h"}""", 400, "input_file_id"),
            ($$"""{"input_file_id":"{{id}}","endpoint":"/v1/chat/completions","completion_window":"24h","extra":1}""", 400, "extra"),
        };
        foreach (var (body, expected, param) in cases)
        {
            var (status, error) = await server.PostAsync("/v1/batches", body);
            Assert.Equal(expected, status);
            Assert.Equal(param, error.GetProperty("error").GetProperty("param").GetString());
        }

        var (listStatus, list) = await server.GetAsync("/v1/batches");
        Assert.Equal((200, 0), (listStatus, list.GetProperty("data").GetArrayLength()));
    }

    [Fact]
    public async Task Uploads_AreCheckedForPurposeAndParts()
    {
        await using var server = await RunningServer.StartAsync();

        var (purposeStatus, purpose) = await UploadAsync(server.Http, ChatLine("a"), purpose: "fine-tune");
        using var noFile = new MultipartFormDataContent { { new StringContent("batch"), "purpose" } };
        using var noFileResponse = await server.Http.PostAsync("/v1/files", noFile, Ct);
        using var notMultipart = await server.Http.PostAsync("/v1/files", new StringContent("{}", Encoding.UTF8, "application/json"), Ct);

        Assert.Equal(400, purposeStatus);
        Assert.Equal("purpose", purpose.GetProperty("error").GetProperty("param").GetString());
        Assert.Equal(HttpStatusCode.BadRequest, noFileResponse.StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, notMultipart.StatusCode);
        var (_, files) = await server.GetAsync("/v1/files");
        Assert.Equal(0, files.GetProperty("data").GetArrayLength());
    }

    [Fact]
    public async Task AFileOverTheLimit_Gets413_AndIsNotKept()
    {
        await using var server = await RunningServer.StartAsync(tune: options => options.MaxUploadBytes = 1000);

        var (status, error) = await UploadAsync(server.Http, string.Concat(Enumerable.Repeat(ChatLine("a") + "\n", 20)));

        Assert.Equal(413, status);
        Assert.Equal("invalid_request_error", error.GetProperty("error").GetProperty("type").GetString());
        var (_, files) = await server.GetAsync("/v1/files");
        Assert.Equal(0, files.GetProperty("data").GetArrayLength());
    }

    [Fact]
    public async Task A200MegabyteUpload_IsStreamedToTheStore_Intact()
    {
        await using var server = await RunningServer.StartAsync();
        const long size = 200L * 1024 * 1024;
        using var content = new GeneratedContent(size);
        using var form = new MultipartFormDataContent { { new StringContent("batch"), "purpose" }, { content, "file", "big.jsonl" } };

        using var response = await server.Http.PostAsync("/v1/files", form, Ct);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var file = JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct)).RootElement;
        Assert.Equal(size, file.GetProperty("bytes").GetInt64());
        await using var stored = await server.Http.GetStreamAsync($"/v1/files/{file.GetProperty("id").GetString()}/content", Ct);
        Assert.Equal(content.Sha256(), Convert.ToHexStringLower(await SHA256.HashDataAsync(stored, Ct)));
    }

    [Fact]
    public async Task EachKey_SeesOnlyItsOwn_AndAWrongKeyGets401InTheDoorsEnvelope()
    {
        await using var server = await RunningServer.StartAsync();
        using var other = server.Client(RunningServer.OtherKey);
        using var nobody = server.Client(null);
        using var wrong = server.Client("sk-wrong");
        var (_, file) = await UploadAsync(server.Http, ChatLine("a") + "\n");
        var (_, batch) = await server.PostAsync("/v1/batches", $$"""{"model":"m","requests":[{{Prompts(1)}}]}""");
        var (_, message) = await server.PostAsync("/v1/messages/batches",
            """{"requests":[{"custom_id":"a","params":{"model":"claude-haiku-4-5","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}}]}""");
        var fileId = file.GetProperty("id").GetString();
        var batchId = batch.GetProperty("id").GetString();
        var messageId = message.GetProperty("id").GetString();

        foreach (var path in new[] { $"/v1/files/{fileId}", $"/v1/files/{fileId}/content", $"/v1/batches/{batchId}", $"/v1/batches/{batchId}/results", $"/v1/batches/{batchId}/results/r0", $"/v1/batches/{messageId}" })
        {
            var (status, error) = await RunningServer.SendAsync(other, HttpMethod.Get, path);
            Assert.Equal(404, status);
            Assert.Equal("invalid_request_error", error.GetProperty("error").GetProperty("type").GetString());
        }

        Assert.Equal(404, (await RunningServer.SendAsync(other, HttpMethod.Post, $"/v1/batches/{batchId}/cancel")).Status);
        Assert.Equal(404, (await RunningServer.SendAsync(other, HttpMethod.Delete, $"/v1/files/{fileId}")).Status);
        var (anthropicStatus, anthropicError) = await RunningServer.SendAsync(other, HttpMethod.Get, $"/v1/messages/batches/{messageId}");
        Assert.Equal((404, "not_found_error"), (anthropicStatus, anthropicError.GetProperty("error").GetProperty("type").GetString()));
        Assert.Equal(0, (await RunningServer.SendAsync(other, HttpMethod.Get, "/v1/batches")).Body.GetProperty("data").GetArrayLength());
        Assert.Equal(0, (await RunningServer.SendAsync(other, HttpMethod.Get, "/v1/files")).Body.GetProperty("data").GetArrayLength());
        Assert.Equal(0, (await RunningServer.SendAsync(other, HttpMethod.Get, "/v1/messages/batches")).Body.GetProperty("data").GetArrayLength());

        foreach (var client in new[] { nobody, wrong })
        {
            var (openAIStatus, openAI) = await RunningServer.SendAsync(client, HttpMethod.Get, "/v1/batches");
            Assert.Equal((401, "invalid_api_key"), (openAIStatus, openAI.GetProperty("error").GetProperty("code").GetString()));
            var (anthropicAuth, anthropic) = await RunningServer.SendAsync(client, HttpMethod.Get, "/v1/messages/batches");
            Assert.Equal((401, "error", "authentication_error"),
                (anthropicAuth, anthropic.GetProperty("type").GetString(), anthropic.GetProperty("error").GetProperty("type").GetString()));
        }

        using var byHeader = server.Client(null);
        byHeader.DefaultRequestHeaders.Add("x-api-key", RunningServer.Key);
        // The key's own list holds its batches of both doors.
        var listed = (await RunningServer.SendAsync(byHeader, HttpMethod.Get, "/v1/batches")).Body.GetProperty("data").EnumerateArray().Select(b => b.GetProperty("id").GetString());
        Assert.Equal([messageId, batchId], listed);
    }

    [Fact]
    public async Task NoResponseOrLog_EverHoldsTheUpstreamKey()
    {
        await using var server = await RunningServer.StartAsync(new SimulatorOptions { ContextTokens = 10 });
        var (_, created) = await server.PostAsync("/v1/batches", """{"model":"m","requests":[{"custom_id":"a","prompt":"hi"},{"custom_id":"b","prompt":"a prompt that is far longer than the small context of this model"}]}""");
        var ended = await server.WaitForEndAsync(created.GetProperty("id").GetString()!);

        var everything = new StringBuilder(ended.ToString());
        everything.Append((await server.GetAsync($"/v1/batches/{ended.GetProperty("id").GetString()}/results")).Body.ToString());
        foreach (var fileId in new[] { ended.GetProperty("output_file_id").GetString(), ended.GetProperty("error_file_id").GetString() })
        {
            everything.Append(await server.Http.GetStringAsync($"/v1/files/{fileId}/content", Ct));
        }

        Assert.Contains("context_length_exceeded", everything.ToString(), StringComparison.Ordinal);
        Assert.DoesNotContain(RunningServer.UpstreamKey, everything.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task UnknownRoutesAndIds_Get404_MalformedJson400_InTheDoorsEnvelope()
    {
        await using var server = await RunningServer.StartAsync();

        var (routeStatus, route) = await server.GetAsync("/v1/nothing");
        var (batchStatus, _) = await server.GetAsync("/v1/batches/batch_nope");
        var (messageStatus, message) = await server.GetAsync("/v1/messages/batches/msgbatch_nope");
        var (jsonStatus, json) = await server.PostAsync("/v1/messages/batches", """{"requests":[{"custom_id":"a",}]}""");

        Assert.Equal((404, 404, 404), (routeStatus, batchStatus, messageStatus));
        Assert.Equal(JsonValueKind.Null, route.GetProperty("error").GetProperty("param").ValueKind);
        Assert.Equal("not_found_error", message.GetProperty("error").GetProperty("type").GetString());
        Assert.Equal(400, jsonStatus);
        Assert.Equal("invalid_request_error", json.GetProperty("error").GetProperty("type").GetString());
        Assert.Contains("not valid JSON", json.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task PastItsCompletionWindow_ABatchEndsExpired_KeepingWhatFinished()
    {
        var time = new FakeTimeProvider(DateTimeOffset.Parse("2026-11-29T12:00:00Z", System.Globalization.CultureInfo.InvariantCulture));
        await using var server = await RunningServer.StartAsync(time: time, upstream: u => u.Limits = new LaneLimits { RequestsPerMinute = 60 });
        // The simulator answers at once, but the lane allows 60 requests a minute on the server's
        // clock, which stands still until the test moves it.
        var (_, created) = await server.PostAsync("/v1/batches", $$"""{"model":"m","completion_window":"1h","requests":[{{Prompts(20)}}]}""");
        var id = created.GetProperty("id").GetString()!;
        Assert.Equal(time.GetUtcNow().AddHours(1).ToUnixTimeSeconds(), created.GetProperty("expires_at").GetInt64());
        await server.WaitForAsync($"/v1/batches/{id}", b => b.GetProperty("request_counts").GetProperty("completed").GetInt64() >= 1);

        time.Advance(TimeSpan.FromHours(2));
        var ended = await server.WaitForAsync($"/v1/batches/{id}", b =>
        {
            time.Advance(TimeSpan.FromSeconds(1));
            return b.GetProperty("status").GetString() == "expired";
        });

        var counts = ended.GetProperty("request_counts");
        Assert.Equal(20, counts.GetProperty("completed").GetInt64() + counts.GetProperty("failed").GetInt64());
        Assert.True(counts.GetProperty("failed").GetInt64() > 0, ended.ToString());
        var errors = await server.Http.GetStringAsync($"/v1/files/{ended.GetProperty("error_file_id").GetString()}/content", Ct);
        Assert.Contains("batch_expired", errors, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ABatchCutOffByARestart_FinishesAfterIt_EachRequestOnce()
    {
        var server = await RunningServer.StartAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(5), RequestsPerMinute = 3000 });
        try
        {
            var (_, created) = await server.PostAsync("/v1/batches", $$"""{"model":"m","requests":[{{Prompts(200)}}]}""");
            var id = created.GetProperty("id").GetString()!;
            await server.WaitForAsync($"/v1/batches/{id}", b => b.GetProperty("request_counts").GetProperty("completed").GetInt64() >= 20);

            server = await server.RestartAsync();
            var ended = await server.WaitForEndAsync(id);

            Assert.Equal("completed", ended.GetProperty("status").GetString());
            Assert.Equal(200, ended.GetProperty("request_counts").GetProperty("completed").GetInt64());
            var (_, results) = await server.GetAsync($"/v1/batches/{id}/results?limit=1000");
            Assert.Equal(200, results.GetProperty("data").EnumerateArray().Select(r => r.GetProperty("custom_id").GetString()).Distinct().Count());
            var output = await server.Http.GetStringAsync($"/v1/files/{ended.GetProperty("output_file_id").GetString()}/content", Ct);
            Assert.Equal(200, output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
            // Only requests in flight at the stop may have been sent twice.
            Assert.InRange(server.Simulator.Provider.Stats().ByStatus[200], 200, 200 + 32);
        }
        finally
        {
            await server.DisposeAsync();
        }
    }

    [Fact]
    public async Task OnStart_AnUploadCutOffWhileValidating_IsReadAgain_AndACreateThatNeverAnswered_IsRemoved()
    {
        var server = await RunningServer.StartAsync();
        try
        {
            var (_, file) = await UploadAsync(server.Http, string.Join("\n", ChatLine("a"), ChatLine("b"), ChatLine("c")) + "\n");
            var fileId = file.GetProperty("id").GetString()!;
            server = await server.RestartAsync(async () =>
            {
                // The state a crash leaves: a file batch read halfway, and an inline create that never answered.
                await using var store = new SqliteBatchStore(new SqliteStoreOptions { Path = server.StatePath }, TimeProvider.System);
                await store.InitializeAsync(Ct);
                await store.CreateBatchAsync(new NewBatch("batch_cut", null, "/v1/chat/completions")
                {
                    Owner = "tenant-one", Door = BatchDoor.OpenAI, InputFileId = fileId, CompletionWindowText = "24h",
                }, Ct);
                await store.AddItemsAsync("batch_cut", [new ImportItem(1, "a", "gpt-4o-mini", Encoding.UTF8.GetBytes("{}"))], Ct);
                await store.CreateBatchAsync(new NewBatch("batch_unanswered", null) { Owner = "tenant-one", Door = BatchDoor.Inline }, Ct);
            });

            var ended = await server.WaitForEndAsync("batch_cut");

            Assert.Equal("completed", ended.GetProperty("status").GetString());
            Assert.Equal((3, 3), (ended.GetProperty("request_counts").GetProperty("total").GetInt32(), ended.GetProperty("request_counts").GetProperty("completed").GetInt32()));
            Assert.Equal(404, (await server.GetAsync("/v1/batches/batch_unanswered")).Status);
        }
        finally
        {
            await server.DisposeAsync();
        }
    }

    /// <summary>A large body made up as it is sent, so the test never holds it either.</summary>
    private sealed class GeneratedContent(long size) : HttpContent
    {
        private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);

        public string Sha256() => Convert.ToHexStringLower(_hash.GetCurrentHash());

        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context)
        {
            var line = Encoding.UTF8.GetBytes(ChatLine(new string('x', 40)) + "\n");
            var chunk = new byte[1024 * 1024];
            long sent = 0;
            while (sent < size)
            {
                var length = (int)Math.Min(chunk.Length, size - sent);
                for (var i = 0; i < length; i++)
                {
                    chunk[i] = line[(sent + i) % line.Length];
                }

                _hash.AppendData(chunk, 0, length);
                await stream.WriteAsync(chunk.AsMemory(0, length));
                sent += length;
            }
        }

        protected override bool TryComputeLength(out long length)
        {
            length = size;
            return true;
        }

        protected override void Dispose(bool disposing)
        {
            _hash.Dispose();
            base.Dispose(disposing);
        }
    }
}
