using System.Text;
using System.Text.Json;
using Parquet;
using Shepherd.Engine.Batches;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Model;

namespace Shepherd.Engine.Tests.Batches;

/// <summary>Results as tables: a row per request with its fields as columns, in CSV and in Parquet, a row group at a time.</summary>
public sealed class TableExportTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private const string Schema = """{"type":"object","properties":{"sentiment":{"enum":["positive","negative"]},"score":{"type":"integer"},"confidence":{"type":["number","null"]},"verified":{"type":"boolean"},"features":{"type":"array","items":{"type":"string"}}},"required":["sentiment"]}""";

    private static OutputContract Contract() =>
        StructuredOutput.Of(BatchEndpoints.ChatCompletions, Encoding.UTF8.GetBytes("""{"model":"m","response_format":{"type":"json_schema","json_schema":{"name":"r","schema":""" + Schema + "}}}"))!;

    private static ItemResult Answered(long line, string content, long costNanos = 1_500) => new(line, $"r{line}", ItemState.Succeeded, new AttemptResult
    {
        StatusCode = 200,
        Body = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new { choices = new[] { new { index = 0, message = new { role = "assistant", content } } } })),
        InputTokens = 12,
        OutputTokens = 7,
        CostNanos = costNanos,
    });

    private static ItemResult Failed(long line) => new(line, $"r{line}", ItemState.Failed, new AttemptResult { ErrorCode = "invalid_output", ErrorMessage = "/sentiment: not one of \"positive\", \"negative\"" });

    private static async IAsyncEnumerable<TableRow> Rows(IEnumerable<ItemResult> items, OutputContract contract)
    {
        foreach (var item in items)
        {
            await Task.Yield();
            yield return TableExport.Row(BatchEndpoints.ChatCompletions, item, contract);
        }
    }

    private static List<ItemResult> Sample() =>
    [
        Answered(1, """{"sentiment":"positive","score":4,"confidence":0.93,"verified":true,"features":["battery","fit"]}"""),
        Answered(2, """{"sentiment":"negative","score":1,"confidence":null,"verified":false,"features":[]}"""),
        Failed(3),
        Answered(4, "Not JSON, with a comma, a \"quote\"\nand a line break"),
    ];

    [Fact]
    public async Task Csv_HasARowPerRequest_TheSchemasFieldsAsColumns_AndQuotesWhatNeedsIt()
    {
        using var output = new MemoryStream();

        var written = await TableExport.WriteAsync(Rows(Sample(), Contract()), TableExport.Columns(Contract(), []), ResultFormat.Csv, output, Ct);
        var text = Encoding.UTF8.GetString(output.ToArray());
        var lines = text.Split("\r\n");

        Assert.Equal(4, written);
        Assert.Equal("custom_id,status,sentiment,score,confidence,verified,features,status_code,text,input_tokens,output_tokens,cost_usd,cached,error_code,error_message", lines[0]);
        Assert.StartsWith("r1,succeeded,positive,4,0.93,true,\"[\"\"battery\"\",\"\"fit\"\"]\",200,", lines[1], StringComparison.Ordinal);
        Assert.EndsWith(",12,7,0.0000015,false,,", lines[1], StringComparison.Ordinal);
        Assert.StartsWith("r2,succeeded,negative,1,,false,[],200,", lines[2], StringComparison.Ordinal);
        Assert.Equal("r3,failed,,,,,,,,0,0,0,false,invalid_output,\"/sentiment: not one of \"\"positive\"\", \"\"negative\"\"\"", lines[3]);
        Assert.Contains("r4,succeeded,,,,,,200,\"Not JSON, with a comma, a \"\"quote\"\"\r\nand a line break\"", text.Replace("\n", "\r\n", StringComparison.Ordinal).Replace("\r\r\n", "\r\n", StringComparison.Ordinal), StringComparison.Ordinal);
        Assert.False(text.StartsWith('\uFEFF'));
    }

    [Fact]
    public async Task Parquet_IsTyped_ByTheSchema_AndWrittenARowGroupAtATime()
    {
        var items = Enumerable.Range(1, 25_000).Select(i => i % 5 == 0 ? Failed(i) : Answered(i, $$"""{"sentiment":"{{(i % 2 == 0 ? "positive" : "negative")}}","score":{{i % 5}},"confidence":0.5,"verified":true,"features":["x"]}""")).ToList();
        using var output = new MemoryStream();

        var written = await TableExport.WriteAsync(Rows(items, Contract()), TableExport.Columns(Contract(), []), ResultFormat.Parquet, output, Ct);
        output.Position = 0;
        await using var reader = await ParquetReader.CreateAsync(output, cancellationToken: Ct);
        var fields = reader.Schema.GetDataFields();

        Assert.Equal(25_000, written);
        Assert.Equal(3, reader.RowGroupCount);
        Assert.Equal(["custom_id", "status", "sentiment", "score", "confidence", "verified", "features", "status_code", "text", "input_tokens", "output_tokens", "cost_usd", "cached", "error_code", "error_message"], fields.Select(f => f.Name));
        Assert.Equal(typeof(long), fields.Single(f => f.Name == "score").ClrType);
        Assert.Equal(typeof(double), fields.Single(f => f.Name == "confidence").ClrType);
        Assert.Equal(typeof(bool), fields.Single(f => f.Name == "verified").ClrType);
        var ids = new List<string?>();
        var scores = new List<long?>();
        for (var g = 0; g < reader.RowGroupCount; g++)
        {
            using var group = reader.OpenRowGroupReader(g);
            var groupIds = new string?[group.RowCount];
            var groupScores = new long?[group.RowCount];
            await group.ReadAsync(fields[0], groupIds.AsMemory(), cancellationToken: Ct);
            await group.ReadAsync<long>(fields.Single(f => f.Name == "score"), groupScores.AsMemory(), cancellationToken: Ct);
            ids.AddRange(groupIds);
            scores.AddRange(groupScores);
        }

        Assert.Equal(items.Select(i => i.CustomId), ids);
        Assert.Equal(items.Select(i => i.State == ItemState.Failed ? (long?)null : i.Line % 5), scores);
    }

    [Fact]
    public void WithoutASchema_TheColumnsAreTheFieldsTheAnswersHave_TypedByTheirValues()
    {
        var rows = new[]
        {
            TableExport.Row(BatchEndpoints.ChatCompletions, Answered(1, """{"label":"a","n":1,"ok":true,"ratio":1}"""), null),
            TableExport.Row(BatchEndpoints.ChatCompletions, Answered(2, """{"label":"b","n":2,"ok":null,"ratio":0.5,"extra":[1]}"""), null),
            TableExport.Row(BatchEndpoints.ChatCompletions, Answered(3, "plain text"), null),
        };

        var columns = TableExport.Columns(null, rows);

        Assert.Equal([new FieldColumn("label", "string"), new FieldColumn("n", "integer"), new FieldColumn("ok", "boolean"), new FieldColumn("ratio", "number"), new FieldColumn("extra", "json")], columns);
        Assert.Equal("plain text", rows[2].Text);
        Assert.Null(rows[2].Fields);
    }

    [Fact]
    public void ResultLines_OfEitherDialect_BecomeRows()
    {
        static JsonElement Line(string json) => JsonDocument.Parse(json).RootElement;

        var openAI = TableExport.Row(BatchEndpoints.ChatCompletions, Line("""{"id":"b1","custom_id":"a","response":{"status_code":200,"body":{"choices":[{"index":0,"message":{"role":"assistant","content":"{\"label\":\"x\"}"}}],"usage":{"prompt_tokens":5,"completion_tokens":3}}},"error":null,"status":"succeeded","cost_usd":0.00002}"""));
        var refused = TableExport.Row(BatchEndpoints.ChatCompletions, Line("""{"id":"b2","custom_id":"b","response":{"status_code":400,"body":{"error":{"message":"too long","code":"context_length_exceeded"}}},"error":null}"""));
        var anthropic = TableExport.Row(BatchEndpoints.Messages, Line("""{"custom_id":"c","result":{"type":"succeeded","message":{"content":[{"type":"text","text":"hi"}],"usage":{"input_tokens":4,"output_tokens":1}}},"cached":true}"""));
        var expired = TableExport.Row(BatchEndpoints.Messages, Line("""{"custom_id":"d","result":{"type":"expired"}}"""));
        var unfit = TableExport.Row(BatchEndpoints.ChatCompletions, Line("""{"id":"b5","custom_id":"e","response":{"status_code":200,"body":{"choices":[{"index":0,"message":{"role":"assistant","content":"{\"label\":"}}],"usage":{"prompt_tokens":6,"completion_tokens":2}}},"error":{"code":"invalid_output","message":"the answer is not JSON"},"status":"failed"}"""));
        var unfitMessage = TableExport.Row(BatchEndpoints.Messages, Line("""{"custom_id":"f","result":{"type":"errored","error":{"type":"error","error":{"type":"invalid_output","message":"the model did not call the tool record"}},"message":{"content":[{"type":"text","text":"no"}],"usage":{"input_tokens":3,"output_tokens":1}}}}"""));

        Assert.Equal(("a", "succeeded", 200, "{\"label\":\"x\"}", 5L, 3L, 0.00002m), (openAI.CustomId, openAI.Status, openAI.StatusCode, openAI.Text, openAI.InputTokens, openAI.OutputTokens, openAI.CostUsd));
        Assert.Equal("x", openAI.Fields!.Value.GetProperty("label").GetString());
        Assert.Equal(("failed", 400, "context_length_exceeded", "too long"), (refused.Status, refused.StatusCode, refused.ErrorCode, refused.ErrorMessage));
        Assert.Equal(("succeeded", "hi", 4L, 1L, true), (anthropic.Status, anthropic.Text, anthropic.InputTokens, anthropic.OutputTokens, anthropic.Cached));
        Assert.Equal("expired", expired.Status);
        // The last answer of a request no answer of which fitted: its text and usage, no fields.
        Assert.Equal(("failed", "{\"label\":", 6L, 2L, "invalid_output"), (unfit.Status, unfit.Text, unfit.InputTokens, unfit.OutputTokens, unfit.ErrorCode));
        Assert.Null(unfit.Fields);
        Assert.Equal(("failed", "no", 3L, "invalid_output"), (unfitMessage.Status, unfitMessage.Text, unfitMessage.InputTokens, unfitMessage.ErrorCode));
    }
}
