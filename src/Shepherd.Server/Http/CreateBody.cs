using System.Buffers;
using System.Security.Cryptography;
using System.Text.Json;
using Shepherd.Engine.Formats;

namespace Shepherd.Server.Http;

/// <summary>
/// The body of a create call, read as a stream: its small fields are kept, and each element of
/// its <c>requests</c> array is written as one line to a spool file on disk, so a body of
/// hundreds of megabytes never sits in memory. Disposing removes the spool file.
/// </summary>
internal sealed class CreateBody : IDisposable
{
    private const int InitialBufferBytes = 64 * 1024;

    private static readonly JsonReaderOptions ReaderOptions = new() { MaxDepth = 64 };

    private readonly Dictionary<string, JsonElement> _fields = new(StringComparer.Ordinal);

    private CreateBody(string spoolPath) => SpoolPath = spoolPath;

    /// <summary>The top-level fields other than <c>requests</c>.</summary>
    public IReadOnlyDictionary<string, JsonElement> Fields => _fields;

    /// <summary>True when the body has a <c>requests</c> array.</summary>
    public bool HasRequests { get; private set; }

    /// <summary>The number of elements in <c>requests</c>.</summary>
    public long RequestCount { get; private set; }

    /// <summary>A file holding each element of <c>requests</c> on its own line, in order.</summary>
    public string SpoolPath { get; }

    /// <summary>
    /// The SHA-256 (lower-case hex) of the body's JSON object as it came, hashed while it was
    /// spooled: what an idempotency key is kept with, so a key reused for another body is seen.
    /// </summary>
    public string Sha256 { get; private set; } = "";

    /// <summary>
    /// Reads a JSON object from <paramref name="body"/>. At most <paramref name="maxRequests"/>
    /// requests of at most <paramref name="maxValueBytes"/> bytes each are accepted.
    /// </summary>
    public static async Task<CreateBody> ReadAsync(Stream body, string spoolFolder, long maxRequests, int maxValueBytes, CancellationToken cancellationToken)
    {
        var result = new CreateBody(Path.Combine(spoolFolder, "create-" + Guid.NewGuid().ToString("N") + ".jsonl"));
        try
        {
            await using var spool = new FileStream(result.SpoolPath, FileMode.CreateNew, FileAccess.Write, FileShare.None, 64 * 1024, FileOptions.Asynchronous);
            await result.ParseAsync(body, spool, maxRequests, maxValueBytes, cancellationToken);
            return result;
        }
        catch
        {
            result.Dispose();
            throw;
        }
    }

    public void Dispose() => File.Delete(SpoolPath);

    private async Task ParseAsync(Stream body, Stream spool, long maxRequests, int maxValueBytes, CancellationToken cancellationToken)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(InitialBufferBytes);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        try
        {
            var parse = new ParseState(maxRequests);
            int start = 0, end = 0;
            var final = false;
            long offset = 0;
            while (true)
            {
                var values = new List<Range>();
                var consumed = Step(buffer.AsSpan(start, end - start), final, ref parse, values, offset);
                foreach (var range in values)
                {
                    var (at, length) = range.GetOffsetAndLength(end - start);
                    await WriteLineAsync(spool, buffer.AsMemory(start + at, length), cancellationToken);
                }

                hash.AppendData(buffer, start, consumed);
                start += consumed;
                offset += consumed;
                if (parse.Phase == Phase.Done)
                {
                    Sha256 = Convert.ToHexStringLower(hash.GetHashAndReset());
                    return;
                }

                if (final)
                {
                    throw ApiException.BadRequest("The body ends before its JSON object is complete.", code: "invalid_json");
                }

                if (start > 0)
                {
                    buffer.AsSpan(start, end - start).CopyTo(buffer);
                    end -= start;
                    start = 0;
                }

                if (end == buffer.Length)
                {
                    if (buffer.Length >= maxValueBytes)
                    {
                        throw ApiException.BadRequest($"A value in the body near byte {offset} is larger than {maxValueBytes} bytes.", parse.Param, "value_too_large");
                    }

                    var larger = ArrayPool<byte>.Shared.Rent(Math.Min(buffer.Length * 2, maxValueBytes));
                    buffer.AsSpan(0, end).CopyTo(larger);
                    ArrayPool<byte>.Shared.Return(buffer);
                    buffer = larger;
                }

                var read = await body.ReadAsync(buffer.AsMemory(end), cancellationToken);
                end += read;
                final = read == 0;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>One element per line: JSON needs no line breaks outside strings, and strings hold none raw.</summary>
    private static async ValueTask WriteLineAsync(Stream spool, ReadOnlyMemory<byte> value, CancellationToken cancellationToken)
    {
        if (value.Span.IndexOfAny((byte)'\n', (byte)'\r') < 0)
        {
            await spool.WriteAsync(value, cancellationToken);
        }
        else
        {
            var flat = value.ToArray();
            flat.AsSpan().Replace((byte)'\n', (byte)' ');
            flat.AsSpan().Replace((byte)'\r', (byte)' ');
            await spool.WriteAsync(flat, cancellationToken);
        }

        spool.WriteByte((byte)'\n');
    }

    /// <summary>
    /// Reads whole units (a field with its value, or one request) from <paramref name="data"/> and
    /// returns the bytes they used; a unit cut off by the end of the data is left for the next call.
    /// </summary>
    private int Step(ReadOnlySpan<byte> data, bool final, ref ParseState parse, List<Range> values, long offset)
    {
        var reader = new Utf8JsonReader(data, final, parse.Reader);
        var done = 0;
        try
        {
            while (parse.Phase != Phase.Done)
            {
                if (!reader.Read())
                {
                    if (final && parse.Phase == Phase.End)
                    {
                        parse.Phase = Phase.Done;
                    }

                    break;
                }

                if (!ReadUnit(ref reader, data, ref parse, values, offset))
                {
                    break;
                }

                done = (int)reader.BytesConsumed;
                parse.Reader = reader.CurrentState;
            }
        }
        catch (JsonException ex)
        {
            var reason = ex.Message.Split(" LineNumber:", 2)[0];
            throw ApiException.BadRequest($"The body is not valid JSON after byte {offset + done}: {reason}", parse.Param, "invalid_json");
        }
        catch (InvalidOperationException ex)
        {
            // A name or string the reader passed as JSON but cannot turn into text: invalid UTF-8, a lone surrogate.
            throw ApiException.BadRequest($"The body is not valid JSON after byte {offset + done}: a string holds text that is not valid Unicode ({ex.Message})", parse.Param, "invalid_json");
        }

        return done;
    }

    /// <summary>Completes the unit whose first token the reader is on; false when the data ends inside it.</summary>
    private bool ReadUnit(ref Utf8JsonReader reader, ReadOnlySpan<byte> data, ref ParseState parse, List<Range> values, long offset)
    {
        switch (parse.Phase)
        {
            case Phase.Start when reader.TokenType == JsonTokenType.StartObject:
                parse.Phase = Phase.Fields;
                return true;
            case Phase.Start:
                throw ApiException.BadRequest("The body must be a JSON object.", code: "invalid_json");
            case Phase.Fields when reader.TokenType == JsonTokenType.EndObject:
                parse.Phase = Phase.End;
                return true;
            case Phase.Fields:
                var name = reader.GetString()!;
                if (!reader.Read())
                {
                    return false;
                }

                if (name == "requests")
                {
                    if (HasRequests)
                    {
                        throw ApiException.BadRequest("\"requests\" appears twice in the body.", "requests");
                    }

                    if (reader.TokenType != JsonTokenType.StartArray)
                    {
                        throw ApiException.BadRequest("\"requests\" must be an array of requests.", "requests");
                    }

                    HasRequests = true;
                    parse.Phase = Phase.Requests;
                    return true;
                }

                var fieldStart = (int)reader.TokenStartIndex;
                if (!reader.TrySkip())
                {
                    return false;
                }

                var field = data[fieldStart..(int)reader.BytesConsumed];
                CheckText(field, offset + fieldStart, name);
                if (!_fields.TryAdd(name, JsonElement.Parse(field)))
                {
                    throw ApiException.BadRequest($"\"{name}\" appears twice in the body.", name);
                }

                return true;
            case Phase.Requests when reader.TokenType == JsonTokenType.EndArray:
                parse.Phase = Phase.Fields;
                return true;
            case Phase.Requests:
                parse.Param = $"requests[{RequestCount}]";
                var valueStart = (int)reader.TokenStartIndex;
                if (!reader.TrySkip())
                {
                    return false;
                }

                if (++RequestCount > parse.MaxRequests)
                {
                    throw ApiException.BadRequest($"A batch holds at most {parse.MaxRequests} requests.", "requests", "too_many_requests");
                }

                CheckText(data[valueStart..(int)reader.BytesConsumed], offset + valueStart, parse.Param);
                values.Add(valueStart..(int)reader.BytesConsumed);
                return true;
            default:
                throw ApiException.BadRequest("The body holds more after its JSON object.", code: "invalid_json");
        }
    }

    /// <summary>A value is kept or spooled unread, so its text is checked before anything decodes it.</summary>
    private static void CheckText(ReadOnlySpan<byte> value, long offset, string? param)
    {
        if (JsonText.Problem(value, ReaderOptions, out var at) is { } problem)
        {
            throw ApiException.BadRequest($"The body is not valid JSON at byte {offset + at}: {problem}.", param, "invalid_json");
        }
    }

    private enum Phase
    {
        Start,
        Fields,
        Requests,
        End,
        Done,
    }

    private struct ParseState(long maxRequests)
    {
        public JsonReaderState Reader = new(ReaderOptions);
        public Phase Phase = Phase.Start;
        public string? Param;
        public readonly long MaxRequests = maxRequests;
    }
}
