using System.Globalization;
using System.Text;
using System.Text.Json;
using Parquet;
using Parquet.Schema;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Model;
using Shepherd.Engine.Upstreams;
using Shepherd.Engine.Pricing;

namespace Shepherd.Engine.Batches;

/// <summary>What results are written as: JSON lines (each answer as the provider gave it), or a table.</summary>
public enum ResultFormat
{
    /// <summary>One JSON line per request, in the batch API's own shape.</summary>
    Jsonl,

    /// <summary>A CSV table (RFC 4180, UTF-8, a header row).</summary>
    Csv,

    /// <summary>An Apache Parquet table, written a row group at a time.</summary>
    Parquet,
}

/// <summary>One request's result as a table row.</summary>
/// <param name="CustomId">The caller's id.</param>
/// <param name="Status">succeeded, failed, cancelled, expired or pending.</param>
/// <param name="StatusCode">The provider's HTTP status, when it answered.</param>
/// <param name="Text">The answer's text (or a forced tool's input as JSON).</param>
/// <param name="Fields">The answer as a JSON object, when it is one: the fields' columns are read from it.</param>
/// <param name="InputTokens">Prompt tokens.</param>
/// <param name="OutputTokens">Output tokens.</param>
/// <param name="CostUsd">What the answer cost.</param>
/// <param name="Cached">True when the answer came from the answer cache.</param>
/// <param name="ErrorCode">The failure's code, for a failed request.</param>
/// <param name="ErrorMessage">The failure in words.</param>
public sealed record TableRow(string CustomId, string Status, int? StatusCode, string? Text, JsonElement? Fields, long InputTokens, long OutputTokens, decimal CostUsd, bool Cached, string? ErrorCode, string? ErrorMessage);

/// <summary>A column of fields of structured answers, and how its values are written.</summary>
/// <param name="Name">The field's name, as the schema gives it.</param>
/// <param name="Kind">string, integer, number or boolean; anything else (objects, arrays, mixed) is written as JSON text.</param>
public sealed record FieldColumn(string Name, string Kind);

/// <summary>
/// Results as tables: one row per request in input order with its id, status, the answer's text,
/// usage and cost, and, for structured answers, one column per top-level field of the schema.
/// CSV is written a row at a time; Parquet a row group of <see cref="RowGroup"/> rows at a time,
/// so memory stays flat however many rows there are.
/// </summary>
public static class TableExport
{
    /// <summary>Rows per Parquet row group: a group is what is held in memory while it is written.</summary>
    public const int RowGroup = 10_000;

    private static readonly string[] Fixed = ["custom_id", "status", "status_code", "text", "input_tokens", "output_tokens", "cost_usd", "cached", "error_code", "error_message"];

    /// <summary>A stored result as a row; <paramref name="contract"/> says where a structured answer is.</summary>
    public static TableRow Row(string endpoint, ItemResult item, OutputContract? contract)
    {
        ArgumentNullException.ThrowIfNull(item);
        var result = item.Result;
        var status = item.State switch
        {
            ItemState.Succeeded => "succeeded",
            ItemState.Failed => "failed",
            ItemState.Cancelled => "cancelled",
            ItemState.Expired => "expired",
            _ => "pending",
        };
        string? text = null;
        JsonElement? fields = null;
        if (item.State == ItemState.Succeeded && result?.Body is { } body)
        {
            using var answer = JsonDocument.Parse(body);
            (text, fields) = StructuredOutput.AnswerOf(endpoint, answer.RootElement, contract);
        }
        else if (result is { ErrorCode: FailureCodes.InvalidOutput, Body: { } kept })
        {
            // The last answer of a request no answer of which fitted: its text, but no fields, which did not fit.
            using var answer = JsonDocument.Parse(kept);
            text = StructuredOutput.AnswerOf(endpoint, answer.RootElement, contract).Text;
        }

        return new TableRow(item.CustomId, status, result?.StatusCode, text, fields, result?.InputTokens ?? 0, result?.OutputTokens ?? 0,
            Cost.ToUsd(result?.CostNanos ?? 0), result?.Cached ?? false, result?.ErrorCode, result?.ErrorMessage);
    }

    /// <summary>
    /// A result line as a row: an OpenAI batch line (<c>response</c> or <c>error</c>) or an
    /// Anthropic one (<c>result</c>), with the <c>status</c> and <c>cost_usd</c> a Shepherd server
    /// adds to the lines it serves (without them, the status comes from the line and the cost is 0).
    /// </summary>
    public static TableRow Row(string endpoint, JsonElement line)
    {
        var customId = Text(line, "custom_id") ?? "";
        var response = Property(line, "response");
        var result = Property(line, "result");
        var anthropic = result.ValueKind == JsonValueKind.Object;
        int? statusCode = Property(response, "status_code") is { ValueKind: JsonValueKind.Number } code ? code.GetInt32() : null;
        var body = anthropic ? Property(result, "message") : Property(response, "body");
        var type = Text(result, "type");
        var status = Text(line, "status") ?? (anthropic
            ? type switch { "succeeded" => "succeeded", "canceled" => "cancelled", "expired" => "expired", _ => "failed" }
            : statusCode is >= 200 and < 300 ? "succeeded" : "failed");
        string? text = null;
        JsonElement? fields = null;
        int input = 0, output = 0, cached = 0;
        var error = anthropic ? Property(Property(result, "error"), "error") : Property(line, "error") is { ValueKind: JsonValueKind.Object } own ? own : Property(body, "error");
        var unfit = Text(error, "code") == FailureCodes.InvalidOutput || Text(error, "type") == FailureCodes.InvalidOutput;
        if ((status == "succeeded" || unfit) && body.ValueKind == JsonValueKind.Object)
        {
            // A failed request's last answer that did not fit keeps its text and usage, not its fields.
            var (answer, structured) = StructuredOutput.AnswerOf(anthropic ? BatchEndpoints.Messages : endpoint, body, null);
            (text, fields) = (answer, unfit ? null : structured);
            Dispatch.UsageReader.TryRead(System.Runtime.InteropServices.JsonMarshal.GetRawUtf8Value(body), out input, out output, out cached);
        }

        var cost = Property(line, "cost_usd") is { ValueKind: JsonValueKind.Number } usd ? usd.GetDecimal() : 0;
        return new TableRow(customId, status, statusCode, text, fields, input, output, cost, Property(line, "cached").ValueKind == JsonValueKind.True,
            status == "succeeded" ? null : Text(error, "code") ?? Text(error, "type"), status == "succeeded" ? null : Text(error, "message"));
    }

    private static JsonElement Property(JsonElement element, string name) =>
        element.ValueKind == JsonValueKind.Object && element.TryGetProperty(name, out var value) ? value : default;

    private static string? Text(JsonElement element, string name) => Property(element, name) is { ValueKind: JsonValueKind.String } value ? value.GetString() : null;

    /// <summary>
    /// Writes <paramref name="rows"/> as a table whose fields' columns are those of the first
    /// <paramref name="sample"/> rows that are JSON objects: they are held, then written with the
    /// rest, so a table needs no schema and no second read of its results.
    /// </summary>
    public static async Task<long> WriteSampledAsync(IAsyncEnumerable<TableRow> rows, int sample, ResultFormat format, Stream output, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(rows);
        await using var enumerator = rows.GetAsyncEnumerator(cancellationToken);
        var held = new List<TableRow>(sample);
        var more = true;
        while (held.Count < sample && (more = await enumerator.MoveNextAsync()))
        {
            held.Add(enumerator.Current);
        }

        async IAsyncEnumerable<TableRow> All()
        {
            foreach (var row in held)
            {
                yield return row;
            }

            while (more && await enumerator.MoveNextAsync())
            {
                yield return enumerator.Current;
            }
        }

        return await WriteAsync(All(), Columns(null, held), format, output, cancellationToken);
    }

    /// <summary>
    /// The columns of the fields: the schema's top-level properties, typed as it types them; or,
    /// without a schema, the fields of the first <paramref name="sample"/> answers that are objects,
    /// typed by their values.
    /// </summary>
    public static IReadOnlyList<FieldColumn> Columns(OutputContract? contract, IEnumerable<TableRow> sample)
    {
        ArgumentNullException.ThrowIfNull(sample);
        if (contract is { Fields.Count: > 0 })
        {
            return [.. contract.Fields.Select(name => new FieldColumn(name, contract.FieldKind(name)))];
        }

        var kinds = new Dictionary<string, string>(StringComparer.Ordinal);
        var order = new List<string>();
        foreach (var row in sample)
        {
            if (row.Fields is not { } fields)
            {
                continue;
            }

            foreach (var field in fields.EnumerateObject())
            {
                var kind = KindOf(field.Value);
                if (!kinds.TryGetValue(field.Name, out var known))
                {
                    order.Add(field.Name);
                    kinds[field.Name] = kind;
                }
                else if (known != kind && field.Value.ValueKind != JsonValueKind.Null)
                {
                    kinds[field.Name] = known == "null" ? kind : known == "integer" && kind == "number" ? "number" : "json";
                }
            }
        }

        return [.. order.Where(name => !Fixed.Contains(name, StringComparer.Ordinal)).Select(name => new FieldColumn(name, kinds[name] == "null" ? "string" : kinds[name]))];
    }

    private static string KindOf(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.String => "string",
        JsonValueKind.Number => value.TryGetInt64(out _) ? "integer" : "number",
        JsonValueKind.True or JsonValueKind.False => "boolean",
        JsonValueKind.Null => "null",
        _ => "json",
    };

    /// <summary>Writes <paramref name="rows"/> as <paramref name="format"/> (CSV or Parquet) to <paramref name="output"/>; returns how many rows it wrote.</summary>
    public static Task<long> WriteAsync(IAsyncEnumerable<TableRow> rows, IReadOnlyList<FieldColumn> fields, ResultFormat format, Stream output, CancellationToken cancellationToken) => format switch
    {
        ResultFormat.Csv => WriteCsvAsync(rows, fields, output, cancellationToken),
        ResultFormat.Parquet => WriteParquetAsync(rows, fields, output, cancellationToken),
        _ => throw new ArgumentOutOfRangeException(nameof(format), format, "Only CSV and Parquet are tables."),
    };

    private static async Task<long> WriteCsvAsync(IAsyncEnumerable<TableRow> rows, IReadOnlyList<FieldColumn> fields, Stream output, CancellationToken cancellationToken)
    {
        await using var writer = new StreamWriter(output, new UTF8Encoding(false), 1 << 16, leaveOpen: true) { NewLine = "\r\n" };
        var line = new StringBuilder();
        Line(line, [.. Fixed.Take(2), .. fields.Select(f => f.Name), .. Fixed.Skip(2)]);
        await writer.WriteLineAsync(line, cancellationToken);
        long count = 0;
        await foreach (var row in rows.WithCancellation(cancellationToken))
        {
            Line(line, [row.CustomId, row.Status, .. fields.Select(f => FieldText(row, f)),
                row.StatusCode?.ToString(CultureInfo.InvariantCulture), row.Text, row.InputTokens.ToString(CultureInfo.InvariantCulture),
                row.OutputTokens.ToString(CultureInfo.InvariantCulture), row.CostUsd.ToString(CultureInfo.InvariantCulture), row.Cached ? "true" : "false", row.ErrorCode, row.ErrorMessage]);
            await writer.WriteLineAsync(line, cancellationToken);
            count++;
        }

        await writer.FlushAsync(cancellationToken);
        return count;
    }

    /// <summary>One CSV line: a field is quoted when it holds a comma, a quote or a line break, its quotes doubled; null is an empty field.</summary>
    private static void Line(StringBuilder line, IEnumerable<string?> values)
    {
        line.Clear();
        var first = true;
        foreach (var value in values)
        {
            if (!first)
            {
                line.Append(',');
            }

            first = false;
            if (value is null)
            {
                continue;
            }

            if (value.AsSpan().IndexOfAny(",\"\r\n") >= 0)
            {
                line.Append('"').Append(value.Replace("\"", "\"\"", StringComparison.Ordinal)).Append('"');
            }
            else
            {
                line.Append(value);
            }
        }
    }

    /// <summary>A field of a row as text: a string as it is, anything else as its JSON; null when the answer has no such field.</summary>
    private static string? FieldText(TableRow row, FieldColumn column) =>
        row.Fields is { } fields && fields.TryGetProperty(column.Name, out var value) && value.ValueKind != JsonValueKind.Null
            ? value.ValueKind == JsonValueKind.String ? value.GetString() : value.GetRawText()
            : null;

    private static async Task<long> WriteParquetAsync(IAsyncEnumerable<TableRow> rows, IReadOnlyList<FieldColumn> fields, Stream output, CancellationToken cancellationToken)
    {
        var fieldColumns = fields.Select(f => f.Kind switch
        {
            "integer" => (DataField)new DataField<long?>(f.Name),
            "number" => new DataField<double?>(f.Name),
            "boolean" => new DataField<bool?>(f.Name),
            _ => new DataField<string>(f.Name, true),
        }).ToList();
        var customId = new DataField<string>("custom_id", false);
        var status = new DataField<string>("status", false);
        var statusCode = new DataField<int?>("status_code");
        var text = new DataField<string>("text", true);
        var input = new DataField<long>("input_tokens");
        var outputTokens = new DataField<long>("output_tokens");
        var cost = new DataField<double>("cost_usd");
        var cached = new DataField<bool>("cached");
        var errorCode = new DataField<string>("error_code", true);
        var errorMessage = new DataField<string>("error_message", true);
        var schema = new ParquetSchema([customId, status, .. fieldColumns, statusCode, text, input, outputTokens, cost, cached, errorCode, errorMessage]);
        await using var writer = await ParquetWriter.CreateAsync(schema, output, new ParquetOptions { CompressionMethod = CompressionMethod.Snappy }, cancellationToken: cancellationToken);
        var group = new List<TableRow>(RowGroup);
        long count = 0;
        async Task FlushAsync()
        {
            using var rowGroup = writer.CreateRowGroup();
            await rowGroup.WriteAsync(customId, group.Select(r => r.CustomId).ToArray());
            await rowGroup.WriteAsync(status, group.Select(r => r.Status).ToArray());
            for (var i = 0; i < fields.Count; i++)
            {
                var column = fields[i];
                var values = group.Select(r => r.Fields is { } f && f.TryGetProperty(column.Name, out var v) && v.ValueKind != JsonValueKind.Null ? v : (JsonElement?)null).ToArray();
                switch (column.Kind)
                {
                    case "integer":
                        await rowGroup.WriteAsync(fieldColumns[i], new ReadOnlyMemory<long?>(values.Select(v => v is { ValueKind: JsonValueKind.Number } n && n.TryGetInt64(out var l) ? l : (long?)null).ToArray()), cancellationToken: cancellationToken);
                        break;
                    case "number":
                        await rowGroup.WriteAsync(fieldColumns[i], new ReadOnlyMemory<double?>(values.Select(v => v is { ValueKind: JsonValueKind.Number } n ? n.GetDouble() : (double?)null).ToArray()), cancellationToken: cancellationToken);
                        break;
                    case "boolean":
                        await rowGroup.WriteAsync(fieldColumns[i], new ReadOnlyMemory<bool?>(values.Select(v => v is { ValueKind: JsonValueKind.True or JsonValueKind.False } b ? b.GetBoolean() : (bool?)null).ToArray()), cancellationToken: cancellationToken);
                        break;
                    default:
                        await rowGroup.WriteAsync(fieldColumns[i], values.Select(v => v is { } value ? value.ValueKind == JsonValueKind.String ? value.GetString() : value.GetRawText() : null).ToArray());
                        break;
                }
            }

            await rowGroup.WriteAsync(statusCode, new ReadOnlyMemory<int?>(group.Select(r => r.StatusCode).ToArray()), cancellationToken: cancellationToken);
            await rowGroup.WriteAsync(text, group.Select(r => r.Text).ToArray());
            await rowGroup.WriteAsync(input, new ReadOnlyMemory<long>(group.Select(r => r.InputTokens).ToArray()), cancellationToken: cancellationToken);
            await rowGroup.WriteAsync(outputTokens, new ReadOnlyMemory<long>(group.Select(r => r.OutputTokens).ToArray()), cancellationToken: cancellationToken);
            await rowGroup.WriteAsync(cost, new ReadOnlyMemory<double>(group.Select(r => (double)r.CostUsd).ToArray()), cancellationToken: cancellationToken);
            await rowGroup.WriteAsync(cached, new ReadOnlyMemory<bool>(group.Select(r => r.Cached).ToArray()), cancellationToken: cancellationToken);
            await rowGroup.WriteAsync(errorCode, group.Select(r => r.ErrorCode).ToArray());
            await rowGroup.WriteAsync(errorMessage, group.Select(r => r.ErrorMessage).ToArray());
            count += group.Count;
            group.Clear();
        }

        await foreach (var row in rows.WithCancellation(cancellationToken))
        {
            group.Add(row);
            if (group.Count == RowGroup)
            {
                await FlushAsync();
            }
        }

        if (group.Count > 0 || count == 0)
        {
            await FlushAsync();
        }

        return count;
    }
}
